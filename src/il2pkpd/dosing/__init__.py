"""Doses, regimens and NONMEM event records."""

from ._records import Record as Record, Records as Records, records_from_columns as records_from_columns
from ._regimen import DoseBlock as DoseBlock, Regimen as Regimen, parse_regimen as parse_regimen, regimen_from_records as regimen_from_records
