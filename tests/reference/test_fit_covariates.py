"""Fits see the dataset's covariates (issue 12, item 1).

Oracles: a closed-form one-compartment IV bolus (weight on CL and V, a categorical covariate
on V, creatinine clearance changing within a subject by NONMEM's next-observation-carried-
backward rule) recomputed with NumPy and ``scipy.stats.norm.logpdf``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import il2pkpd
from il2pkpd.errors import DataFormatError, OptionError
from il2pkpd.inference import build_pymc_model
from il2pkpd.likelihood import JointLoglik, subject_data

SPEC = {
    "model": {"name": "iv1_cov", "time_unit": "h"},
    "parameters": {
        "tvcl": {"value": 2.0, "unit": "L/h", "lower": 0.0, "prior": {"dist": "lognormal", "median": 2.0, "sigma": 1.0}},
        "tvv": {"value": 20.0, "unit": "L", "lower": 0.0, "prior": {"dist": "lognormal", "median": 20.0, "sigma": 1.0}},
        "th_cat": {"value": 0.3, "unit": "1", "prior": {"dist": "normal", "mean": 0.0, "sd": 1.0}},
        "th_crcl": {"value": 0.5, "unit": "1", "prior": {"dist": "normal", "mean": 0.0, "sd": 1.0}},
    },
    "constants": {"wt_ref": {"value": 70.0, "unit": "kg"}, "crcl_ref": {"value": 100.0, "unit": "mL/min"}},
    "covariates": {
        "wt": {"value": 70.0, "unit": "kg", "label": "WT"},
        "cat": {"value": 0.0, "unit": "1", "label": "CAT"},
        "crcl": {"value": 100.0, "unit": "mL/min", "label": "CRCL"},
    },
    "states": {"central": {"unit": "mg", "dose": True}},
    "odes": {"central": "-cl/v*central"},
    "outputs": {
        "cl": {"expr": "tvcl*(wt/wt_ref)^0.75*(crcl/crcl_ref)^th_crcl", "unit": "L/h"},
        "v": {"expr": "tvv*(wt/wt_ref)*(1 + th_cat*cat)", "unit": "L"},
        "cp": {"expr": "central/v", "unit": "mg/L"},
    },
    "observations": {"cp": {"output": "cp", "dvid": 1, "error": {"model": "additive", "add": 0.2}}},
}

# subject 1: WT 50, CAT 1, CRCL 60 throughout; subject 2: WT 90, CAT 0, CRCL 120 up to and
# including the record at 6 h, then 40 (NOCB: the value on the record at 6 h holds over (0, 6])
DATA = """ID,TIME,EVID,AMT,CMT,DV,WT,CAT,CRCL
1,0,1,100,1,.,50,1,60
1,1,0,0,1,3.1,50,1,60
1,4,0,0,1,2.6,50,1,60
1,12,0,0,1,1.2,50,1,60
2,0,1,100,1,.,90,0,120
2,1,0,0,1,3.6,90,0,120
2,6,0,0,1,2.0,90,0,120
2,8,0,0,1,1.4,90,0,40
2,12,0,0,1,1.1,90,0,40
"""

THETA = {"tvcl": 2.0, "tvv": 20.0, "th_cat": 0.3, "th_crcl": 0.5}
SIGMA = 0.2


def _model():
    return il2pkpd.build_model(SPEC)


def _closed_form_loglik() -> float:
    """Piecewise-exponential concentrations with each interval's covariates, by hand."""
    total = 0.0
    # subject 1: constant covariates
    cl = THETA["tvcl"] * (50 / 70) ** 0.75 * (60 / 100) ** THETA["th_crcl"]
    v = THETA["tvv"] * (50 / 70) * (1 + THETA["th_cat"])
    t = np.array([1.0, 4.0, 12.0])
    total += scipy.stats.norm.logpdf([3.1, 2.6, 1.2], 100 / v * np.exp(-cl / v * t), SIGMA).sum()
    # subject 2: CRCL 120 over (0, 6], 40 after (the records at 8 and 12 h carry 40)
    v = THETA["tvv"] * (90 / 70)
    cl_a = THETA["tvcl"] * (90 / 70) ** 0.75 * (120 / 100) ** THETA["th_crcl"]
    cl_b = THETA["tvcl"] * (90 / 70) ** 0.75 * (40 / 100) ** THETA["th_crcl"]
    c6 = 100 / v * np.exp(-cl_a / v * 6)
    pred = [100 / v * np.exp(-cl_a / v * 1), c6, c6 * np.exp(-cl_b / v * 2), c6 * np.exp(-cl_b / v * 6)]
    total += scipy.stats.norm.logpdf([3.6, 2.0, 1.4, 1.1], pred, SIGMA).sum()
    return float(total)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("cov") / "data.csv"
    path.write_text(DATA)
    return il2pkpd.read_nonmem_csv(path)


def test_conditional_loglik_uses_dataset_covariates_including_time_varying(dataset):
    model = _model()
    data = subject_data(model, dataset)
    assert data.row_cov is not None  # CRCL changes within subject 2
    loglik = JointLoglik(model, data, il2pkpd.SolverOptions(rtol=1e-10, atol=1e-12))
    theta = np.tile([THETA[p.name] for p in model.parameters], (2, 1))
    total, _, status = loglik(theta, error_params={"cp": {"add": SIGMA}})
    assert np.all(np.asarray(status) == 0)
    assert float(total) == pytest.approx(_closed_form_loglik(), rel=1e-8)


def test_pymc_model_potential_is_the_dataset_covariate_loglik(dataset):
    """The graph fit() samples: its likelihood term at fixed parameters is the SciPy value."""
    model = _model()
    pmodel = build_pymc_model(model, subject_data(model, dataset), options=il2pkpd.SolverOptions(rtol=1e-10, atol=1e-12))
    [term] = pmodel.replace_rvs_by_values([pmodel["loglik"]])
    fn = pmodel.compile_fn(term, inputs=pmodel.value_vars, on_unused_input="ignore", mode="JAX")
    point = {"tvcl_log__": np.log(THETA["tvcl"]), "tvv_log__": np.log(THETA["tvv"]), "th_cat": THETA["th_cat"],
             "th_crcl": THETA["th_crcl"], "sigma_cp_log__": np.log(SIGMA)}
    assert float(fn(point)) == pytest.approx(_closed_form_loglik(), rel=1e-8)


def test_fit_refuses_a_dataset_without_a_covariate_column(tmp_path):
    model = _model()
    path = tmp_path / "data.csv"
    path.write_text("\n".join(",".join(row.split(",")[:-1]) for row in DATA.strip().splitlines()) + "\n")  # CRCL dropped
    with pytest.raises(DataFormatError, match=r"no column for covariate `crcl` \(label `CRCL`\)"):
        il2pkpd.fit(model, path, sampler="map")


def test_fit_refuses_records_without_covariates(dataset):
    model = _model()
    records = subject_data(model, dataset).records
    with pytest.raises(OptionError, match=r"has covariates \['wt', 'cat', 'crcl'\]: pass `covariates="):
        il2pkpd.fit(model, list(records), sampler="map")
    with pytest.raises(OptionError, match=r"missing \['crcl'\]"):
        subject_data(model, list(records), covariates={"wt": 70.0, "cat": 0.0})


def test_fit_refuses_a_column_naming_a_parameter(tmp_path):
    model = _model()
    path = tmp_path / "data.csv"
    lines = DATA.strip().splitlines()
    path.write_text("\n".join([lines[0] + ",TVCL"] + [row + ",2" for row in lines[1:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"column `tvcl` names parameter `tvcl`"):
        il2pkpd.fit(model, path, sampler="map")
