"""caveat: Chromatin Accessibility Variant Effect Accuracy Testbed.

An allele-specific ATAC-seq benchmark for sequence-to-accessibility models:
WASP-filtered allele counts → allelic imbalance → Basset-style CNNs under four
training regimes → in-silico mutagenesis → reference vs variant-effect accuracy,
stratified by ubiquitous vs cell-type specific regulatory elements.
"""

__version__ = "0.1.0"
