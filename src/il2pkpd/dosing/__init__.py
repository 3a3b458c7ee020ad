"""Doses, regimens and NONMEM event records."""

from ._records import MAX_ADDL as MAX_ADDL, MAX_MAGNITUDE as MAX_MAGNITUDE, Record as Record, Records as Records
from ._records import records_from_columns as records_from_columns
from ._regimen import DoseBlock as DoseBlock, Regimen as Regimen, parse_regimen as parse_regimen, regimen_from_records as regimen_from_records
