process SCORE_VARIANTS {
    // In-silico mutagenesis of every variant of the variant sets with one regime's model
    // (single_task: one cell type's model): REF vs ALT at the centre bin — a GPU task.
    tag "${meta.id}"
    label 'process_gpu'
    container "${task.accelerator ? 'ghcr.io/caveat-bench/caveat-gpu:0.1.0' : 'ghcr.io/caveat-bench/caveat:0.1.0'}"

    input:
    tuple val(meta), path(model_dir), path(variant_sets)
    tuple path(fasta), path(fai)
    path score_vcf

    output:
    tuple val(meta), path("variant_scores.${meta.id}.parquet"), emit: scores
    tuple val(meta), path("variant_scores.${meta.id}.summary.json"), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('score_variants.py --version'), emit: versions_caveat, topic: versions

    script:
    def args = task.ext.args ?: ''
    def cell_type = meta.cell_type ? "--cell-type ${meta.cell_type}" : ''
    def vcf = score_vcf ? "--vcf ${score_vcf}" : ''
    """
    score_variants.py \\
        --model ${model_dir}/model.pt \\
        --regime ${meta.regime} \\
        ${cell_type} \\
        --fasta ${fasta} \\
        --variant-sets ${variant_sets} \\
        ${vcf} \\
        --threads ${task.cpus} \\
        --out variant_scores.${meta.id}.parquet \\
        --summary variant_scores.${meta.id}.summary.json \\
        ${args}
    """

    stub:
    """
    touch variant_scores.${meta.id}.parquet
    echo '{"variants": 0}' > variant_scores.${meta.id}.summary.json
    """
}
