/*
 * CAVEAT: ATAC-seq → WASP-filtered allele counts → allelic imbalance → Basset-style CNNs
 * under four training regimes → in-silico mutagenesis → reference vs variant-effect accuracy,
 * by ubiquitous vs cell-type specific regulatory elements.
 *
 * The same steps, in the same dependency order, as the local engine (`caveat run`);
 * tests/test_nextflow_contract.py checks both.
 */

include { PREPARE_INPUTS; samplesheetFile } from '../subworkflows/local/prepare_inputs/main'
include { ALLELE_COUNTS  } from '../subworkflows/local/allele_counts/main'
include { TRACKS         } from '../subworkflows/local/tracks/main'
include { IMBALANCE      } from '../subworkflows/local/imbalance/main'
include { MODELS         } from '../subworkflows/local/models/main'
include { EVALUATE       } from '../modules/local/evaluate/main'
include { REPORT         } from '../modules/local/report/main'

workflow CAVEAT {
    main:
    PREPARE_INPUTS(params.input, params.fasta, params.vcf, params.aligner, params.aligner_index, params.simulate, params.seed)

    ch_contig_map = optionalFile(params.contig_map)
    ALLELE_COUNTS(
        PREPARE_INPUTS.out.samples,
        PREPARE_INPUTS.out.libraries,
        PREPARE_INPUTS.out.library_donors,
        PREPARE_INPUTS.out.groups,
        PREPARE_INPUTS.out.donors,
        PREPARE_INPUTS.out.fasta,
        PREPARE_INPUTS.out.vcf,
        PREPARE_INPUTS.out.index,
        ch_contig_map
    )

    ch_cluster_assignments = optionalFile(params.cluster_assignments)
    // the user's blacklist, else the simulated study's (if it has one): artefact regions for
    // CLUSTER_PEAKS (peaks), CALL_IMBALANCE (het sites) and BUILD_DATASET (windows)
    ch_blacklist = params.blacklist ? optionalFile(params.blacklist) : PREPARE_INPUTS.out.blacklist
    TRACKS(
        PREPARE_INPUTS.out.samples,
        PREPARE_INPUTS.out.libraries,
        PREPARE_INPUTS.out.groups,
        ALLELE_COUNTS.out.wasp_bam,
        PREPARE_INPUTS.out.samplesheet,
        PREPARE_INPUTS.out.peak_beds,
        PREPARE_INPUTS.out.fasta,
        params.insertions_source,
        ch_cluster_assignments,
        ch_contig_map,
        ldscBimFiles(params.ldsc_bim),
        params.ldsc_bim ? "ldsc_bim/${file(params.ldsc_bim).name}" : '',
        ch_blacklist,
        cellTypePeakFiles(params.cell_type_peaks)
    )

    IMBALANCE(ALLELE_COUNTS.out.counts, PREPARE_INPUTS.out.cell_types, TRACKS.out.peaks, ch_blacklist)

    // a list param given on the command line (--regimes multitask,single_task) is one string
    def regimes = listParam(params.regimes)
    // score_variants scores every variant a metric uses: both tables of match_negatives
    ch_variant_tables = IMBALANCE.out.variant_sets
        .combine(IMBALANCE.out.stratum_matched.map { _meta, parquet -> parquet })
        .map { meta, sets, strata -> [meta, [sets, strata]] }
    ch_score_vcf = optionalFile(params.score_vcf)
    ch_unmappable = optionalFile(params.unmappable_bed)
    // outside models (issue 18.7): one [meta, model file] per row of the params.outside_models sheet,
    // in sheet order (splitCsv(header: true) emits one map per data row, keyed by the header:
    // Nextflow docs, operator splitCsv; fromPath → splitCsv → map keeps the file's order)
    ch_outside = params.outside_models
        ? channel.fromPath(params.outside_models, checkIfExists: true)
            .splitCsv(header: true, strip: true)
            .map { row -> [outsideMeta(row, params.window_size as int), outsideFile(row, file(params.outside_models).parent)] }
        : channel.empty()
    MODELS(
        TRACKS.out.pseudobulk,
        TRACKS.out.peaks,
        ch_variant_tables,
        PREPARE_INPUTS.out.cell_types,
        PREPARE_INPUTS.out.fasta,
        regimes,
        ch_blacklist,
        ch_score_vcf,
        ch_contig_map,
        ch_unmappable,
        params.train_replicates as int,
        ch_outside
    )

    ch_evaluate_in = MODELS.out.predictions
        .combine(MODELS.out.scores.map { _meta, parquet -> parquet })
        .combine(IMBALANCE.out.variant_sets.map { _meta, parquet -> parquet })
        .combine(IMBALANCE.out.stratum_matched.map { _meta, parquet -> parquet })
        .combine(IMBALANCE.out.imbalance.map { _meta, parquet -> parquet })
        .combine(TRACKS.out.peaks.map { _meta, parquet -> parquet })
        .combine(TRACKS.out.donor_counts.map { _meta, parquet -> parquet })
        .combine(MODELS.out.windows.map { _meta, windows, summary -> [windows, summary] })
    // EVALUATE also writes the benchmark bundle (caveat.bundle): test windows and their genome
    EVALUATE(ch_evaluate_in, PREPARE_INPUTS.out.fasta)

    // the report reads a results folder laid out as the local engine's outdir
    ch_report_tables = EVALUATE.out.metrics
        .mix(EVALUATE.out.summary, IMBALANCE.out.imbalance, IMBALANCE.out.variant_sets, IMBALANCE.out.stratum_matched, IMBALANCE.out.summaries)
        .mix(TRACKS.out.peaks, TRACKS.out.summary, TRACKS.out.insertions_summary, MODELS.out.predictions, MODELS.out.predict_summary)
        .mix(ALLELE_COUNTS.out.summaries, MODELS.out.score_summary)
        .mix(MODELS.out.windows.map { meta, _windows, summary -> [meta, summary] })
        .map { _meta, file -> file }
        .toSortedList()
    ch_report_in = ch_report_tables
        .map { tables -> [tables] }
        .combine(ALLELE_COUNTS.out.wasp_stats.map { _meta, stats -> stats }.toSortedList().map { stats -> [stats] })
        .map { tables, stats -> [[id: 'report'], tables, stats] }
    REPORT(ch_report_in, MODELS.out.trained)

    emit:
    het_sites      = ALLELE_COUNTS.out.het_snps.mix(ALLELE_COUNTS.out.het_indels)
    wasp_bam       = ALLELE_COUNTS.out.wasp_bam
    wasp_stats     = ALLELE_COUNTS.out.wasp_stats
    counts         = ALLELE_COUNTS.out.counts
    bigwig         = TRACKS.out.bigwig
    pseudobulk     = TRACKS.out.pseudobulk
    peaks          = TRACKS.out.peaks
    donor_counts   = TRACKS.out.donor_counts
    called_peaks   = TRACKS.out.called_peaks
    ldsc           = TRACKS.out.ldsc
    imbalance      = IMBALANCE.out.imbalance
    variant_sets   = IMBALANCE.out.variant_sets.mix(IMBALANCE.out.stratum_matched)
    windows        = MODELS.out.windows
    models         = MODELS.out.models.mix(MODELS.out.baseline)
    predictions    = MODELS.out.predictions
    scores         = MODELS.out.scores.mix(MODELS.out.vcf_scores)
    metrics        = EVALUATE.out.metrics
    bundle         = EVALUATE.out.bundle
    report         = REPORT.out.html
    summaries      = ALLELE_COUNTS.out.summaries
        .mix(IMBALANCE.out.summaries, TRACKS.out.insertions_summary)
        .mix(TRACKS.out.summary, EVALUATE.out.summary, REPORT.out.summary, MODELS.out.predict_summary)
        .mix(MODELS.out.train_summary, MODELS.out.score_summary, MODELS.out.baseline_summary)
        .mix(MODELS.out.windows.map { meta, _windows, summary -> [meta, summary] })
}

// The PLINK .bim file(s) of params.ldsc_bim (a .bim file, or a per-chromosome prefix: every
// <prefix>*.bim), staged into CLUSTER_PEAKS as ldsc_bim/*; [] for none.
def ldscBimFiles(bim) {
    if (!bim) {
        return []
    }
    if (bim.endsWith('.bim')) {
        return [file(bim, checkIfExists: true)]
    }
    return files("${bim}*.bim", checkIfExists: true)
}

// The files of params.cell_type_peaks (a glob of <cell_type>.bed/.narrowPeak files, the peaks
// of cell types whose samplesheet rows give none, e.g. single-cell libraries), staged into
// CLUSTER_PEAKS as cell_type_peaks/*; [] for none. files() resolves the glob's folder against
// the launch directory (Nextflow.file0 → fileNamePattern: toCanonicalPath(splitter.parent), then
// FileHelper.visitFiles; checkIfExists fails on no match); the local engine resolves a relative
// glob against the params file: give an absolute glob when the two differ.
def cellTypePeakFiles(pattern) {
    if (!pattern) {
        return []
    }
    return files(pattern, checkIfExists: true)
}

// A list param as a list: a params file or config gives a list, the command line one string
// (`--regimes multitask,single_task`; Nextflow does not split it), so a string is split on commas.
// conf/modules.config splits list params the same way, inline.
// (A list prints as "[a, b]": splitting its text on brackets, commas and spaces serves both.)
def listParam(value) {
    if (value == null) {
        return []
    }
    return value.toString().tokenize('[], ')
}

// One row of the outside_models sheet (a map from splitCsv(header: true)) as a model's meta, read as
// caveat.outside_models.read_sheet reads it: tasks positional and ';'-separated (- for an unused
// output; empty entries kept, so that predict.py refuses them by line), seq_len defaulting to
// window_size. meta.outside tells SCORE_VARIANTS the model is a file with a task map, not a train folder.
def outsideMeta(row, windowSize) {
    def name = row.name as String
    def tasksText = (row.tasks ?: '') as String
    // padding each ';' keeps empty entries through tokenize (which drops empty tokens)
    def tasks = tasksText.replace(';', ' ; ').tokenize(';').collect { task -> task.trim() }
    def seqLen = row.seq_len ? row.seq_len as int : windowSize
    return [id: name, regime: name, cell_type: null, replicate: null, outside: true, task_names: tasks, seq_len: seqLen]
}

// The model file of a sheet row: relative to the sheet's folder, an absolute path or URL as
// written (the samplesheet's rule, samplesheetFile of subworkflows/local/prepare_inputs).
def outsideFile(row, sheetDir) {
    return samplesheetFile(row.model as String, sheetDir, "outside model ${row.name}")
}

// An optional input file as a process takes it: the file, or [] for none.
def optionalFile(path) {
    if (path) {
        return file(path, checkIfExists: true)
    }
    return []
}
