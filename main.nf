#!/usr/bin/env nextflow
/*
 * caveat — Chromatin Accessibility Variant Effect Accuracy Testbed
 *
 *   nextflow run <repo> -profile test,docker --outdir results_test   (self-contained: simulates its study)
 *   nextflow run <repo> -profile slurm,singularity,gpu -params-file params.yaml -resume
 *
 * The params file is the same as `caveat run --params` (the local engine) reads.
 * Outputs are laid out below params.outdir as docs/nextflow.md describes.
 */

include { validateParameters; paramsSummaryLog } from 'plugin/nf-schema'
include { CAVEAT                               } from './workflows/caveat'

workflow {
    main:
    validateParameters()
    log.info(paramsSummaryLog(workflow))

    // a summary when the run ends, and where to look when it failed (nf-core/tools pipeline
    // template, PIPELINE_COMPLETION: `workflow.onComplete { completionSummary(...) }` and
    // `workflow.onError { log.error ... }` inside a workflow's main:)
    workflow.onComplete {
        def summary = completionSummary(workflow.success, workflow.stats, workflow.duration, params.outdir, params.trace_report_suffix)
        if (workflow.success) {
            log.info(summary)
        } else {
            log.error(summary)
        }
    }
    workflow.onError {
        log.error("caveat stopped: ${workflow.errorMessage}\n" +
            "The failing task's folder (its path is printed above) holds .command.sh, .command.out and .command.err; " +
            "fix the cause and relaunch the same command with -resume (finished tasks are reused).")
    }

    CAVEAT()

    ch_versions = channel.topic('versions')
        .map { process, tool, version -> "${process.tokenize(':').last()}\t${tool}\t${version.trim()}" }
        .unique()
        .collectFile(name: 'software_versions.tsv', seed: 'process\ttool\tversion', newLine: true, sort: true)

    // the params this launch ran with, beside its execution reports (nf-core's params dump)
    ch_params = channel.of(groovy.json.JsonOutput.prettyPrint(groovy.json.JsonOutput.toJson(params)))
        .collectFile(name: "params_${params.trace_report_suffix}.json", newLine: true)

    publish:
    het_sites      = CAVEAT.out.het_sites.map { _meta, parquet -> parquet }
    wasp           = CAVEAT.out.wasp_bam.map { _meta, bam, bai -> [bam, bai] }.mix(CAVEAT.out.wasp_stats.map { _meta, stats -> stats })
    counts         = CAVEAT.out.counts.map { _meta, parquet -> parquet }
    insertions     = CAVEAT.out.bigwig.mix(CAVEAT.out.pseudobulk).map { _meta, bigwig -> bigwig }
    peaks          = CAVEAT.out.peaks.mix(CAVEAT.out.donor_counts).map { _meta, parquet -> parquet }
    called_peaks   = CAVEAT.out.called_peaks.map { _meta, files -> files }
    ldsc           = CAVEAT.out.ldsc.map { _meta, folder -> folder }
    imbalance      = CAVEAT.out.imbalance.mix(CAVEAT.out.variant_sets).map { _meta, parquet -> parquet }
    windows        = CAVEAT.out.windows.map { _meta, windows, _summary -> windows }
    models         = CAVEAT.out.models.map { _meta, folder -> folder }
    predictions    = CAVEAT.out.predictions.map { _meta, parquet -> parquet }
    variant_scores = CAVEAT.out.scores.map { _meta, parquet -> parquet }
    metrics        = CAVEAT.out.metrics.map { _meta, parquet -> parquet }
    benchmark_bundle = CAVEAT.out.bundle.map { _meta, folder -> folder }
    report         = CAVEAT.out.report.map { _meta, html -> html }
    summaries      = CAVEAT.out.summaries.map { _meta, json -> json }
    versions       = ch_versions
    params_dump    = ch_params
}

// The completion summary: tasks by outcome, run time, and where the outputs and reports are.
def completionSummary(boolean success, stats, duration, String outdir, String suffix) {
    def status = success ? 'completed' : 'FAILED'
    return "caveat ${status} after ${duration}: ${stats.succeededCount} tasks succeeded, " +
        "${stats.cachedCount} reused from cache, ${stats.ignoredCount} ignored, ${stats.failedCount} failed\n" +
        "  outputs: ${outdir}\n" +
        "  report:  ${outdir}/report.html\n" +
        "  run reports and params: ${outdir}/pipeline_info/ (*_${suffix}.*)"
}

// A published file keeps its path relative to the task directory, below the output's `path`
// (Nextflow 25.10 PublishOp.normalizePath / PublishDir.apply1: sourceDir.relativize(file)):
// a process output `models/x` published with path 'models' lands in models/models/x.
// tests/test_nextflow_runtime.py computes every published path this way and compares it
// with the local engine's layout.
output {
    het_sites {
        path '.'
    }
    wasp {
        path 'wasp'
    }
    counts {
        path 'counts'
    }
    insertions {
        path 'insertions'
    }
    peaks {
        path '.'
    }
    called_peaks {
        path '.'   // the task writes peaks/<cell_type>.macs3.narrowPeak
    }
    ldsc {
        path '.'
    }
    imbalance {
        path '.'
    }
    windows {
        path '.'
    }
    models {
        path '.'   // the task writes models/<regime>, models/single_task/<cell_type>
    }
    predictions {
        path '.'
    }
    variant_scores {
        path '.'
    }
    metrics {
        path '.'
    }
    benchmark_bundle {
        path '.'   // the task writes benchmark_bundle/
    }
    report {
        path '.'
    }
    summaries {
        path '.'
    }
    versions {
        path 'pipeline_info'
    }
    params_dump {
        path 'pipeline_info'
    }
}
