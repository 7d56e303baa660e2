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
    // bam/peaks come back as strings (the schema gives them no file-path format): they are
    // resolved here against the samplesheet's folder, as `caveat run` resolves them
    def sheet_dir = file(input).parent
    def rows = samplesheetToList(input, "${projectDir}/assets/schema_input.json")
        .collect { meta, bam, peaks ->
            [meta, samplesheetFile(bam, sheet_dir, meta.id), peaks ? samplesheetFile(peaks, sheet_dir, meta.id) : []]
        }
    // cell types in order of first appearance: the order of every per-cell-type target column
    // (not named `cell_types`: a `def` of an emitted name would shadow the emit, see
    // tests/test_nextflow_runtime.py::test_no_workflow_declares_an_emitted_name_with_def)
    def cell_type_names = rows.collect { row -> row[0].cell_type }.unique()
    // every distinct peaks file once, in samplesheet order; CLUSTER_PEAKS stages the i-th as
    // input_peaks/<i>/<name> (stageAs: 'input_peaks/?/*'), so two BEDs with one name never collide
    def peak_files = rows.collect { row -> row[2] }.findAll { peaks -> peaks }.unique()

    ch_samples = channel.fromList(rows)
        .map { meta, bam, peaks -> [meta, bam, siblingFile(bam, '.bai'), peaks] }

    // the samplesheet as the steps read it, with file names as they are staged in a task
    ch_samplesheet = channel.fromList(rows)
        .map { meta, bam, peaks -> "${meta.id},${meta.donor},${meta.cell_type},${bam.name},${peaks ? "input_peaks/${peak_files.indexOf(peaks) + 1}/${peaks.name}" : ''}" }
        .collectFile(name: 'samplesheet.csv', seed: 'sample,donor,cell_type,bam,peaks', newLine: true, sort: 'index')
        .first()

    ch_fasta = channel.value([file(fasta, checkIfExists: true), file("${fasta}.fai", checkIfExists: true)])
    ch_vcf = channel.value([file(vcf, checkIfExists: true), file("${vcf}.tbi", checkIfExists: true)])

    // scatter over the FASTA's contigs (the .fai's first column)
    ch_chroms = channel.fromPath("${fasta}.fai")
        .splitCsv(sep: '\t')
        .map { row -> row[0] }

    if (aligner_index) {
        ch_index = channel.value([files(alignerIndexGlob(aligner, aligner_index), checkIfExists: true), file(aligner_index).name])
    } else {
        ALIGNER_INDEX(file(fasta), aligner)
        ch_index = ALIGNER_INDEX.out.index.map { index -> [index, file(fasta).baseName] }
    }

    emit:
    samples     = ch_samples                  // [meta, bam, bai, peaks]
    samplesheet = ch_samplesheet              // path
    peak_beds   = channel.value(peak_files)   // the samplesheet's peaks files, each once (may be empty)
    cell_types  = channel.value(cell_type_names)   // list of cell types
    fasta       = ch_fasta                    // [fasta, fai]
    vcf         = ch_vcf                      // [vcf, tbi]
    chroms      = ch_chroms                   // contig name
    index       = ch_index                    // [index files, prefix]
}

// A file named in the samplesheet, as both engines read it (caveat.samplesheet.read_samplesheet):
// a relative path against the samplesheet's folder, an absolute path or a URL (s3://, gs://,
// https://…) as written. (nf-schema's `format: file-path` would resolve it against the launch
// directory: nf-schema 2.5.1 SamplesheetConverter.processValue calls Nextflow.file(value).)
def samplesheetFile(String value, sheet_dir, String sample) {
    def as_written = value.startsWith('/') || value.matches('^[A-Za-z][A-Za-z0-9+.-]*://.*')
    def path = as_written ? file(value) : sheet_dir.resolve(value).normalize()
    if (!path.exists()) {
        error("samplesheet: sample ${sample}: file ${value} not found (${path}); relative paths are relative to the samplesheet's folder")
    }
    return path
}

// The file beside `path` whose name adds `suffix` (x.bam → x.bam.bai), on the same file
// system: Path.resolveSibling keeps an s3:// or gs:// path's scheme and bucket, where
// "${path}" (Path.toString) drops them.
def siblingFile(path, String suffix) {
    def sibling = path.resolveSibling(path.name + suffix)
    if (!sibling.exists()) {
        error("${path.name}: its index ${sibling.name} is missing beside it (samtools index ${path.name})")
    }
    return sibling
}

// The files of an aligner index prefix, and only those: "${prefix}*" would also stage the
// FASTA (and its .fai) into every WASP task when the prefix is the FASTA's base name.
def alignerIndexGlob(String aligner, String prefix) {
    return aligner == 'bwa'
        ? "${prefix}.{amb,ann,bwt,pac,sa,0123,bwt.2bit.64}"
        : "${prefix}.*.bt2*"
}
