process INSERTIONS_FRAGMENTS {
    // Tn5 insertion bigWigs of every single-cell library's donor × cell type group, from the
    // libraries' Cell Ranger fragments files (one task: a group may span libraries):
    // <donor>_<cell_type>.bw and its figures <donor>_<cell_type>.insertions.json (a bulk sample's
    // --stats format), in the task's folder (a published file keeps its path below it: main.nf).
    // No pseudobulk here: INSERTIONS_PSEUDOBULK sums a cell type's tracks over all its samples,
    // bulk and single-cell alike, as the local engine does.
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    // the i-th fragments file and the i-th .tbi land in fragments/<i>/ (index beside its file;
    // `?` is the 1-based index in the list: Nextflow TaskInputResolver.expandWildcards0)
    tuple val(meta), path(fragments, stageAs: 'fragments/?/*'), path(tbis, stageAs: 'fragments/?/*'), path(barcodes, stageAs: 'barcodes/?/*'), val(libraries), val(table_donors)
    tuple path(fasta), path(fai)

    output:
    tuple val(meta), path('*.bw'), emit: bigwig
    tuple val(meta), path('*.insertions.json'), emit: stats
    tuple val("${task.process}"), val('caveat'), eval('insertions.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    // table_donors: `<library>=<donor>` of each one-donor library whose table has no donor column
    def donor_args = table_donors.collect { pair -> "--table-donor ${pair}" }.join(' ')
    """
    insertions.py \\
        --fasta ${fasta} \\
        --fragments ${fragments} \\
        --barcodes ${barcodes} \\
        --libraries ${libraries.join(' ')} \\
        ${donor_args} \\
        --no-pseudobulk \\
        --group-stats \\
        --out-dir . \\
        ${args}
    """

    stub:
    """
    touch ${meta.id}.bw
    echo '{"fragments": 0, "insertions": 0}' > ${meta.id}.insertions.json
    """
}
