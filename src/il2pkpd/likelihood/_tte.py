"""Time-to-event log-likelihood from a model's hazard and cumulative hazard, pure JAX.

For subject i followed to time T_i with event indicator d_i (1 event, 0 right-censored),
with hazard h and cumulative hazard H = integral of h from the start (the model's
``hazard_<event>`` output and ``cumhaz_<event>`` state at T_i):

    log L_i = d_i * log h(T_i) - H(T_i)
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["loglik_time_to_event"]


def loglik_time_to_event(event, hazard_at_t, cumhaz_at_t, cumhaz_at_entry=0.0):
    """Right-censored (and left-truncated, via ``cumhaz_at_entry``) event log-likelihood.

    Parameters
    ----------
    event
        1 for an event at the time, 0 for censoring.
    hazard_at_t, cumhaz_at_t
        Hazard and cumulative hazard at the event/censoring time.
    cumhaz_at_entry
        Cumulative hazard at entry into the risk set (0 when followed from the start).
    """
    safe_h = jnp.where(event == 1, hazard_at_t, 1.0)
    return jnp.where(event == 1, jnp.log(safe_h), 0.0) - (cumhaz_at_t - cumhaz_at_entry)
