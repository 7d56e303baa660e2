process CLUSTER_PEAKS {
    // Union peaks × cell types accessibility (log2 CPM + 1) → specificity (tau) and
    // clusters: one ubiquitous, the rest cell-type specific. Calls MACS3 peaks on the
    // pseudobulk of cell types whose samplesheet rows give no peaks.
    tag "${meta.id}"
    label 'process_medium'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    // samplesheet: the run's samples table (WASP_REMAP_STUDY), its peaks paths as staged here
    tuple val(meta), path(samplesheet), path(bigwigs, stageAs: 'insertions/*'), path(peak_beds, stageAs: 'input_peaks/?/*')
    tuple path(fasta), path(fai)
    path cluster_assignments
    path contig_map
    path ldsc_bim, stageAs: 'ldsc_bim/*'   // PLINK .bim file(s), or []
    val ldsc_bim_arg                       // the --ldsc-bim path: ldsc_bim/<file or prefix>, or ''
    path blacklist, stageAs: 'blacklist/*' // BED of artefact regions (union peaks overlapping it dropped), or []
    path cell_type_peaks, stageAs: 'cell_type_peaks/*'   // params.cell_type_peaks' <cell_type>.bed files, or []

    output:
    tuple val(meta), path('peaks.parquet'), emit: peaks
    tuple val(meta), path('peaks_donor_counts.parquet'), emit: donor_counts
    tuple val(meta), path('cluster_peaks.summary.json'), emit: summary
    tuple val(meta), path('peaks/*'), emit: called_peaks, optional: true
    tuple val(meta), path('ldsc'), emit: ldsc, optional: true
    tuple val("${task.process}"), val('caveat'), eval('cluster_peaks.py --version'), emit: versions_caveat, topic: versions
    tuple val("${task.process}"), val('macs3'), eval('macs3 --version | sed "s/^macs3 //"'), emit: versions_macs3, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def assignments = cluster_assignments ? "--cluster-assignments ${cluster_assignments}" : ''
    def map_arg = contig_map ? "--contig-map ${contig_map}" : ''
    def bim_arg = ldsc_bim_arg ? "--ldsc-bim ${ldsc_bim_arg}" : ''
    def blacklist_arg = blacklist ? "--blacklist ${blacklist}" : ''
    // the glob is matched again here, on the staged files (cluster_peaks.glob_peaks names a cell type by file name)
    def peaks_glob_arg = cell_type_peaks ? "--cell-type-peaks 'cell_type_peaks/*'" : ''
    """
    # a real file here, so that the peaks paths in it resolve against this task's folder
    cat ${samplesheet} > samplesheet.task.csv

    cluster_peaks.py \\
        --input samplesheet.task.csv \\
        --fasta ${fasta} \\
        --insertions insertions \\
        ${assignments} \\
        ${map_arg} \\
        ${bim_arg} \\
        ${blacklist_arg} \\
        ${peaks_glob_arg} \\
        --outdir . \\
        ${args}
    """

    stub:
    """
    touch peaks.parquet peaks_donor_counts.parquet
    echo '{"peaks": 0}' > cluster_peaks.summary.json
    """
}
