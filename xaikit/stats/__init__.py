"""Statistics on tidy region scores, pingouin-style: a long table in, a long table of tests out.

Every test function returns the columns ``family, test, method, region, group_a, group_b, n_a, n_b,
statistic, p_raw, p_adj, correction, effect_size, effect_name, ci_low, ci_high, significant`` (plus
context columns), raw and adjusted p side by side. Concatenate tables and call :func:`correct` to make
everything you tested one family.

>>> from xaikit.stats import compare_groups, region_enrichment, correct
"""
from . import protocols
from ._table import TEST_COLUMNS
from .alignment import alignment, alignment_summary, spearman_ci
from .bootstrap import bootstrap_ci, cluster_bootstrap
from .calibration import null_fwer
from .correction import CORRECTIONS, correct
from .effects import cohen_d, cohen_dz, hedges_g, kendall_w, paired_rank_biserial, rank_biserial
from .enrichment import region_enrichment
from .groups import TWO_SAMPLE_TESTS, compare_groups, two_sample
from .methods import compare_methods, compare_paired, compare_regions
from .mixed import mixed_model
from .power import detectable_effect, power_table, required_n
from .protocols import PROTOCOLS, choose_test, nimanui, run_protocol, sumer2023
from .summary import describe

__all__ = [
    "TEST_COLUMNS", "CORRECTIONS", "TWO_SAMPLE_TESTS", "PROTOCOLS",
    "correct", "compare_groups", "two_sample", "region_enrichment", "compare_paired", "compare_methods",
    "compare_regions", "mixed_model", "detectable_effect", "required_n", "power_table", "alignment",
    "alignment_summary", "spearman_ci", "protocols", "choose_test", "nimanui", "sumer2023", "run_protocol", "null_fwer",
    "describe", "bootstrap_ci", "cluster_bootstrap", "cohen_d", "hedges_g", "cohen_dz", "rank_biserial",
    "paired_rank_biserial", "kendall_w",
]
