process WASP_REMAP_STUDY {
    // The run's samples table (caveat.single_cell.write_samples_table): the samplesheet's bulk rows
    // and the donor × cell type groups of its single-cell libraries' barcode tables (doublet,
    // unassigned and unlabelled rows dropped as caveat.single_cell.read_barcode_table drops them).
    // Every task that needs the run's samples, donors or cell types reads this table as --input,
    // so the tables are read here once and those tasks stage no library file. The libraries'
    // reads are probed here, before any WASP task (--check-reads: CB tags, barcode suffixes,
    // table barcodes with reads; what `caveat run` checks first): their BAM's first records and
    // the fragments file's first lines, read through symlinks (an executor that copies inputs
    // downloads them once, as WASP_REMAP_PLAN does the BAMs).
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    // the i-th barcode table lands in barcodes/<i>/ (a `?` in a stageAs folder is the file's
    // 1-based index in its list: Nextflow TaskInputResolver.expandWildcards0), as the staged
    // samplesheet names it (PREPARE_INPUTS), so two libraries' tables with one name do not collide;
    // the i-th library's BAM, .bai, fragments and .tbi land in libraries/<i>/ (each index beside its file)
    tuple val(meta), path(samplesheet), path(barcodes, stageAs: 'barcodes/?/*'), path(bams, stageAs: 'libraries/?/*'), path(bais, stageAs: 'libraries/?/*'), path(fragments, stageAs: 'libraries/?/*'), path(tbis, stageAs: 'libraries/?/*')

    output:
    tuple val(meta), path('samples.csv'), emit: samples
    tuple val("${task.process}"), val('caveat'), eval('wasp_remap.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    # a real file here, so that the barcode paths in it resolve against this task's folder
    cat ${samplesheet} > samplesheet.task.csv

    wasp_remap.py \\
        --study samplesheet.task.csv \\
        --check-reads \\
        --out-samples samples.csv \\
        ${args}
    """

    stub:
    // the bulk rows as they are (what -stub's SIMULATE writes); a library's groups need its table read
    """
    printf 'sample,donor,cell_type,bam,peaks,source,libraries\\n' > samples.csv
    awk -F, 'NR > 1 && \$6 == "" && \$7 == "" { print \$1 "," \$2 "," \$3 "," \$4 "," \$5 ",bulk," }' ${samplesheet} >> samples.csv
    """
}
