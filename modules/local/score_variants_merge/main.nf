process SCORE_VARIANTS_MERGE {
    // The per-model score tables (one per regime; single_task: per cell type) → one table,
    // sorted as the local engine writes it: variant_scores.parquet (or vcf_scores.parquet).
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(tables, stageAs: 'parts/*')

    output:
    tuple val(meta), path("${prefix}.parquet"), emit: scores
    tuple val(meta), path("${meta.summary}"), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('score_variants.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    """
    score_variants.py \\
        --merge ${tables} \\
        --out ${prefix}.parquet \\
        --summary ${meta.summary} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.parquet
    echo '{"rows": 0, "tables": 0}' > ${meta.summary}
    """
}
