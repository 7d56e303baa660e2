"""Simulation presets: sizes of the simulated study.

``tiny`` is for unit and integration tests (< 60 s); ``demo`` is rich enough for
every downstream must-hold (imbalance calls, clustering, CNN training, WASP bias);
``large`` (~10x the demo) is the scaling benchmark's third size (``benchmarks/bench_scaling.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Relative human chromosome lengths (GRCh38, Mb) used to shape chr1..chr22.
HUMAN_MB = (248, 242, 198, 190, 181, 171, 159, 145, 138, 134, 135, 133, 114, 107, 102, 90, 83, 80, 59, 64, 47, 51)


@dataclass(frozen=True)
class Preset:
    """Every knob of one simulated study (sizes, rates, read model)."""

    name: str
    genome_bp: int                    # total chr1..chr22 length
    cell_types: tuple[str, ...]
    donors: tuple[str, ...]
    element_spacing: int              # mean bp between element centres
    dups_per_chrom: float             # segmental duplications (target deserts) per chromosome
    dup_len: tuple[int, int] = (1000, 5000)
    dup_divergence: float = 0.01
    psv_fraction: float = 0.6         # share of het SNVs in a dup source whose paralog carries ALT
    gap_len: tuple[int, int] = (300, 2000)
    gc: float = 0.40
    site_rate: float = 2.5e-3         # polymorphic sites per bp (~1 het per kb per donor)
    # site density inside duplication sources, as a multiple of site_rate: the reads left there
    # after the WASP filter are few (most are ambiguous), so more sites let a study measure the
    # residual mapping bias finely (demo: SE ~0.003 on the pooled REF fraction, not ~0.006)
    dup_site_rate_factor: float = 1.0
    indel_fraction: float = 0.07
    causal_fraction: float = 0.30     # elements given a planted motif-breaking/creating site
    fragments_per_sample: int = 20000
    background_fraction: float = 0.25
    duplicate_rate: float = 0.06
    read_len: int = 50
    peak_threshold: float = 0.10      # accessibility above which an element is a peak
    # --- faults real data have (issue 15); a rate or size of 0 switches one off. Off in a bare
    # Preset, on in the presets (FAULTS_ON); without_faults() / `caveat simulate --no-faults`
    # switch them off ---
    # genotype errors in the VCF, per donor as a share of its true het sites: hom-REF/hom-ALT
    # sites written as het (half of them in accessible elements, where reads show n:0), and
    # true hets written as hom (sites lost to the study)
    false_het_rate: float = 0.0
    lost_het_rate: float = 0.0
    # donor-to-donor variation of element accessibility: log-normal factor (sd of its log,
    # mean 1) per donor x element, the same on both haplotypes and in every cell type
    donor_accessibility_sd: float = 0.0
    # allelic overdispersion rho: per sample x element, the haplotype share of its fragments is
    # Beta-distributed around the planted share m (mean m, variance rho m (1 - m))
    allelic_overdispersion: float = 0.0
    # chrX (bp, after chr22; 0 = none) and X-inactivation: per donor the share of cells whose
    # active X is the first haplotype (GT left allele) is 0.5 +- U(xci_skew / 2, xci_skew) (0 = off)
    chrx_bp: int = 0
    xci_skew: float = 0.4
    # collapsed-repeat artefact regions on autosomes: copies absent from the reference pile
    # their reads at one locus (extra fragments, wholly inside the region, for a mean read depth
    # of artefact_depth per sample, >10x the 99th percentile of depth at het sites; each copy
    # fixed for one allele at each site there); a blacklist.bed covers them (+ margin)
    artefact_regions: int = 0
    artefact_len: tuple[int, int] = (150, 400)
    artefact_depth: float = 1500.0
    blacklist_margin: int = 100
    # --- single-cell presets (issue 19; simulate/single_cell.py): 0 libraries = a bulk study;
    # otherwise each donor x cell type's fragments go to cells of 10x-like libraries pooling
    # every donor (doublets and unassigned cells labelled so in the barcode tables, ambient
    # barcodes absent from them), with cross-cell twins planted at strong elements
    sc_libraries: int = 0
    sc_cells_per_sample: int = 40
    sc_doublet_fraction: float = 0.03     # of a library's cells: share a barcode with another donor's cell
    sc_unassigned_fraction: float = 0.02  # of a library's cells: labelled unassigned (demultiplexing failed)
    sc_ambient_fraction: float = 0.02     # of fragments: given barcodes that are no cell
    sc_twin_fraction: float = 0.05        # of strong-element fragments in cells: a twin in another cell


_FAULTS = {"false_het_rate": 0.03, "lost_het_rate": 0.02, "donor_accessibility_sd": 0.3,
           "allelic_overdispersion": 0.02, "xci_skew": 0.4, "artefact_depth": 1500.0}
#: Every fault, as the presets plant it (tiny: 24 kb chrX, 2 artefact regions; demo: 150 kb, 5).
#: tiny plants a milder overdispersion (rho 0.005): its 16-28 tested sites per cell type are too
#: few to fit the null's overdispersion (BIC keeps one component, an upper bound that leaves the
#: beta-binomial test without calls), so tiny keeps the study's binomial test, which tolerates
#: rho 0.005 there; the demo plants rho 0.02 and tests with the beta-binomial (PRESET_PARAMS).
FAULTS_ON: dict[str, dict] = {
    "tiny": {**_FAULTS, "allelic_overdispersion": 0.005, "chrx_bp": 24000, "artefact_regions": 2},
    "demo": {**_FAULTS, "chrx_bp": 150000, "artefact_regions": 5},
    # large (scaling benchmark, issue 17.1): the demo's faults at 10x its size
    "large": {**_FAULTS, "chrx_bp": 1_500_000, "artefact_regions": 50},
}
_FAULT_FIELDS = frozenset(k for v in FAULTS_ON.values() for k in v)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny", genome_bp=260_000, cell_types=("ctA", "ctB", "ctC"), donors=("D1", "D2", "D3"),
        element_spacing=1600, dups_per_chrom=1.0, dup_len=(1000, 2000), gap_len=(200, 600),
        site_rate=4e-3, fragments_per_sample=14000, **FAULTS_ON["tiny"],
    ),
    "demo": Preset(
        name="demo", genome_bp=3_000_000, cell_types=("ctA", "ctB", "ctC", "ctD"), donors=("D1", "D2", "D3"),
        # 160 000 fragments per sample (240 000 until 2026-12-01): bowtie2 is most of the
        # simulation's time, and the demo trains two replicates within 15 minutes on 2 cores; het
        # sites 6x denser in duplication sources (4x until then) keep >= 15 000 reads at the
        # planted-null duplication SNPs (tests/test_wasp_remap.py::test_demo_bias_within_001)
        element_spacing=1000, dups_per_chrom=7.0, dup_site_rate_factor=6.0, fragments_per_sample=160000,
        background_fraction=0.2, **FAULTS_ON["demo"],
    ),
    # ~10x the demo's genome and reads, same cell types, donors, element and site density (the
    # scaling benchmark's third size, benchmarks/bench_scaling.py; not for the tests)
    "large": Preset(
        name="large", genome_bp=30_000_000, cell_types=("ctA", "ctB", "ctC", "ctD"), donors=("D1", "D2", "D3"),
        element_spacing=1000, dups_per_chrom=70.0, dup_site_rate_factor=6.0, fragments_per_sample=1_600_000,
        background_fraction=0.2, **FAULTS_ON["large"],
    ),
}


def _single_cell(base: str, name: str, cells: int, **changes) -> Preset:
    """``base`` (genome, donors, cell types, faults, fragments: the same truth) as 10x-like
    libraries: two libraries pooling every donor, ``cells`` cells per donor x cell type."""
    import dataclasses

    return dataclasses.replace(PRESETS[base], name=name, sc_libraries=2, sc_cells_per_sample=cells, **changes)


# tiny: ~350 fragments per cell (14 000 per donor x cell type / 40 cells); demo-sc: 240 000 / 200,
# the demo's fragments and duplication het-site density before 2026-12-01 (demo-sc's must-holds
# were measured so)
PRESETS["tiny-sc"] = _single_cell("tiny", "tiny-sc", 40)
PRESETS["demo-sc"] = _single_cell("demo", "demo-sc", 200, fragments_per_sample=240000, dup_site_rate_factor=4.0)
FAULTS_ON["tiny-sc"], FAULTS_ON["demo-sc"] = FAULTS_ON["tiny"], FAULTS_ON["demo"]


def without_faults(p: Preset) -> Preset:
    """``p`` with every fault switched off (each field of :data:`FAULTS_ON` at its
    :class:`Preset` default): the clean study, e.g. to show what a filter buys."""
    import dataclasses

    off = {f.name: f.default for f in dataclasses.fields(Preset) if f.name in _FAULT_FIELDS}
    return dataclasses.replace(p, **off)


#: Extra params merged into the simulated study's params.yaml (training sizes etc.).
PRESET_PARAMS: dict[str, dict] = {
    # small models so the whole pipeline runs in a couple of minutes (tiny) or ~15 (demo) on 2 cores;
    # the study's full 5.84 M-parameter model is the default for real data
    "tiny": {
        "model_filters": 8, "model_filters_max": 16, "model_tower_blocks": 6, "model_bottleneck": 8,
        "model_dense": 16, "train_optimizer": "adamw", "train_lr": 0.002, "train_batch_size": 32,
        "train_max_epochs": 2, "train_patience": 2, "train_replicates": 1,
        # single-task models get the multitask values: the study's 0.0005 / 256 is one or two
        # steps per epoch on a study this size
        "train_lr_single_task": 0.002, "train_batch_size_single_task": 32,
        "match_bins": 4,  # a handful of imbalanced sites per cell type: 20 bins leave some empty
    },
    "demo": {
        "model_filters": 16, "model_filters_max": 32, "model_tower_blocks": 6, "model_bottleneck": 16,
        "model_dense": 32, "model_dropout": 0.1, "train_optimizer": "adamw", "train_lr": 0.005,
        # two replicates of each model (issue 18: the study trained three, the demo may use two) in
        # 6 epochs (12, then 10 with one replicate until 2026-12-01): the demo must finish in 15 min
        # on 2 cores
        "train_batch_size": 64, "train_max_epochs": 6, "train_patience": 2, "train_min_epochs": 1,
        "train_clip_norm": 2.0, "train_max_windows": 6000, "train_replicates": 2,
        "train_lr_single_task": 0.005, "train_batch_size_single_task": 64,
        # the demo plants allelic overdispersion rho 0.02 (FAULTS_ON): the study's binomial test
        # calls overdispersed balanced sites (FDP ~0.06 on the demo); the beta-binomial with the
        # null sites' rho keeps FDP <= 0.02 (docs/CONVENTIONS.md)
        "imbalance_test": "betabinomial",
    },
}
# large: the demo's model and schedule with training windows capped at 20000 (demo 6000 of its
# ~12 k): its ~120 k training windows would make CPU training ~10x the demo's (hours) and dominate
# the benchmark, so training grows ~3.3x while the study grows 10x (benchmarks/bench_scaling.py
# fits train's time against the windows it actually saw, windows x epochs)
PRESET_PARAMS["large"] = {**PRESET_PARAMS["demo"], "train_max_windows": 20000, "train_replicates": 1}


# a library row holds many cell types: their peak BEDs come through cell_type_peaks (docs/single_cell.md)
PRESET_PARAMS["tiny-sc"] = {**PRESET_PARAMS["tiny"], "cell_type_peaks": "peaks/*.bed"}
# demo-sc keeps 12 epochs and one replicate (no time bar; its must-holds were measured so:
# tests/test_demo_single_cell.py)
PRESET_PARAMS["demo-sc"] = {**PRESET_PARAMS["demo"], "train_max_epochs": 12, "train_replicates": 1,
                            "cell_type_peaks": "peaks/*.bed"}


def with_donors(p: Preset, donors) -> Preset:
    """``p`` with only ``donors`` (a subset of its donors, in the preset's order): the same genome,
    cell types and depth per sample for fewer samples (the scaling benchmarks' larger preset)."""
    import dataclasses

    from ..errors import InputError

    wanted = [d for d in donors if d]
    unknown = [d for d in wanted if d not in p.donors]
    if unknown or not wanted:
        raise InputError("--donors", f"{','.join(unknown) or 'none'}: not donor(s) of preset {p.name}",
                         f"name some of {', '.join(p.donors)}, comma-separated")
    return dataclasses.replace(p, donors=tuple(d for d in p.donors if d in wanted))


def get_preset(name: str) -> Preset:
    from ..errors import InputError

    if name not in PRESETS:
        raise InputError("--preset", f"unknown preset {name!r}", f"use one of {', '.join(PRESETS)}")
    return PRESETS[name]
