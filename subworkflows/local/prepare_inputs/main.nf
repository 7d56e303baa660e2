/*
 * PREPARE_INPUTS: the samplesheet (validated by nf-schema against assets/schema_input.json),
 * the genome, the genotypes, the contigs to scatter over and the aligner index WASP remaps with.
 */

include { samplesheetToList } from 'plugin/nf-schema'
include { ALIGNER_INDEX     } from '../../../modules/local/aligner_index/main'

workflow PREPARE_INPUTS {
    take:
    input           // string: samplesheet CSV (sample, donor, cell_type, bam[, peaks])
    fasta           // string: genome FASTA (with .fai beside it)
    vcf             // string: bgzipped, tabix-indexed multi-sample VCF
    aligner         // string: bowtie2 | bwa
    aligner_index   // string: index prefix, or null to build one from the FASTA

    main:
    def rows = samplesheetToList(input, "${projectDir}/assets/schema_input.json")
    // cell types in order of first appearance: the order of every per-cell-type target column
    def cell_types = rows.collect { row -> row[0].cell_type }.unique()

    ch_samples = channel.fromList(rows)
        .map { meta, bam, peaks -> [meta, bam, file("${bam}.bai", checkIfExists: true), peaks] }

    // the samplesheet as the steps read it, with file names as they are staged in a task
    ch_samplesheet = channel.fromList(rows)
        .map { meta, bam, peaks -> "${meta.id},${meta.donor},${meta.cell_type},${bam.name},${peaks ? 'input_peaks/' + peaks.name : ''}" }
        .collectFile(name: 'samplesheet.csv', seed: 'sample,donor,cell_type,bam,peaks', newLine: true, sort: 'index')
        .first()

    ch_fasta = channel.value([file(fasta, checkIfExists: true), file("${fasta}.fai", checkIfExists: true)])
    ch_vcf = channel.value([file(vcf, checkIfExists: true), file("${vcf}.tbi", checkIfExists: true)])

    // scatter over the FASTA's contigs (the .fai's first column)
    ch_chroms = channel.fromPath("${fasta}.fai")
        .splitCsv(sep: '\t')
        .map { row -> row[0] }

    if (aligner_index) {
        ch_index = channel.value([files("${aligner_index}*", checkIfExists: true), file(aligner_index).name])
    } else {
        ALIGNER_INDEX(file(fasta), aligner)
        ch_index = ALIGNER_INDEX.out.index.map { index -> [index, file(fasta).baseName] }
    }

    emit:
    samples     = ch_samples                  // [meta, bam, bai, peaks]
    samplesheet = ch_samplesheet              // path
    cell_types  = channel.value(cell_types)   // list of cell types
    fasta       = ch_fasta                    // [fasta, fai]
    vcf         = ch_vcf                      // [vcf, tbi]
    chroms      = ch_chroms                   // contig name
    index       = ch_index                    // [index files, prefix]
}
