"""Published designs as :class:`~il2pkpd.design.TrialDesign` values (times in days from the
first dose; day 1 of a protocol is t = 0). What a source did not state is marked [I] in
``notes``."""

from __future__ import annotations

from .trial import Arm, Sample, TrialDesign

__all__ = ["ivory", "lilacs", "dilfrequency"]

IVORY_REGIMEN = "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"
IVORY_VISITS = (0.0, 4.0, 11.0, 25.0, 39.0, 53.0, 60.0)  # days 1, 5, 12, 26, 40, 54, 61 (S14)


def ivory(n_il2: int = 31, n_placebo: int = 29, followup_years: float = 2.0) -> TrialDesign:
    """IVORY (NCT04241601) with the IVORY-FINALE follow-up.

    1:1 aldesleukin 1.5 MIU s.c. daily x5 then weekly x7 vs placebo (S6, S12); 31:29 completed
    (S12). Tregs and NK at the registry visits, days 1, 5, 12, 26, 40, 54, 61 (S14); FDG-PET TBR
    before treatment and at day 61 (S12; exact scan days [I]); MI over two years (S3, S19),
    with ~8% lost to follow-up over two years (55 of 60 in FINALE, S3) [I].
    """
    return TrialDesign(
        name="IVORY",
        arms=(Arm("aldesleukin 1.5 MIU", IVORY_REGIMEN, n_il2), Arm("placebo", None, n_placebo)),
        samples=(Sample("treg", IVORY_VISITS), Sample("nk", IVORY_VISITS), Sample("tbr", (0.0, 60.0))),
        followup=365.25 * followup_years,
        events=("mi",),
        dropout_per_year=0.043,
        source="S6, S12, S14, S3, S19",
        notes="PET at t=0 (before the first dose) and t=60 (day 61) [I]; dropout 0.043/year from 55/60 in FINALE [I]",
    )


def lilacs(n_per_dose: int = 6, n_placebo: int = 4) -> TrialDesign:
    """LILACS part B (NSTEMI/UA): aldesleukin 1.5 or 2.5 MIU s.c. daily x5 vs placebo, drug to
    placebo 6:2 per dose level (S22, S24). Tregs before dosing, the day after the last dose
    (day 6) and 7 days later (day 13) (S24; days [I])."""
    return TrialDesign(
        name="LILACS part B",
        arms=(Arm("1.5 MIU", "1.5 MIU sc qd x5", n_per_dose), Arm("2.5 MIU", "2.5 MIU sc qd x5", n_per_dose), Arm("placebo", None, n_placebo)),
        samples=(Sample("treg", (0.0, 5.0, 12.0)),),
        source="S22, S24",
        notes="sampling days 1, 6 and 13 inferred from 'the day after dosing and again 7 days later' [I]",
    )


def dilfrequency(n: int = 36, doses: int = 10) -> TrialDesign:
    """DILfrequency (type 1 diabetes): the optimal regimen, 0.26 MIU/m2 s.c. every 3 days
    (S44), Tregs at baseline and at steady state (pre-dose on the last dosing day) [I]."""
    last = 3.0 * (doses - 1)
    return TrialDesign(
        name="DILfrequency",
        arms=(Arm("0.26 MIU/m2 q3d", f"0.26 MIU/m2 sc q3d x{doses}", n),),
        samples=(Sample("treg", (0.0, last)),),
        source="S44",
        notes="single arm at the optimal regimen; steady-state sample on the last dosing day, before the dose [I]",
    )
