/*
 * PREPARE_INPUTS: the samplesheet (validated by nf-schema against assets/schema_input.json),
 * the genome, the genotypes and the aligner index WASP remaps with:
 * the user's files, or (simulate set, as -profile test sets it) a study SIMULATE writes first.
 */

include { samplesheetToList } from 'plugin/nf-schema'
include { ALIGNER_INDEX     } from '../../../modules/local/aligner_index/main'
include { SIMULATE          } from '../../../modules/local/simulate/main'
include { WASP_REMAP_STUDY  } from '../../../modules/local/wasp_remap_study/main'

workflow PREPARE_INPUTS {
    take:
    input           // string: samplesheet CSV (bulk rows sample, donor, cell_type, bam[, peaks]; single-cell
                    // library rows sample, bam, fragments, barcodes[, donor]: docs/single_cell.md), or null with simulate
    fasta           // string: genome FASTA (with .fai beside it), or null with simulate
    vcf             // string: bgzipped, tabix-indexed multi-sample VCF, or null with simulate
    aligner         // string: bowtie2 | bwa
    aligner_index   // string: index prefix, or null to build one from the FASTA
    simulate        // string: a `caveat simulate` preset to run on instead (tiny, demo), or null
    seed            // integer: the simulation's seed

    main:
    if (simulate) {
        if (aligner != 'bowtie2') {
            error("--simulate writes BAMs aligned with bowtie2: WASP must remap with it (--aligner bowtie2), not ${aligner}")
        }
        // one folder output: every file below it is the study's (Path.resolve keeps an
        // object-store path's scheme and bucket)
        SIMULATE(simulate, seed)
        ch_sheet = SIMULATE.out.study.map { study -> study.resolve('samplesheet.csv') }
        ch_fasta = SIMULATE.out.study.map { study -> [study.resolve('genome.fa'), study.resolve('genome.fa.fai')] }
        ch_vcf = SIMULATE.out.study.map { study -> [study.resolve('genotypes.vcf.gz'), study.resolve('genotypes.vcf.gz.tbi')] }
        // the simulated BAMs were aligned with bowtie2 against <study>/genome
        ch_index = SIMULATE.out.study.map { study -> [alignerIndexFiles(study, 'bowtie2', 'genome'), 'genome'] }
        // the study's blacklist (its collapsed-repeat artefact regions), when it writes one
        ch_blacklist = SIMULATE.out.study.map { study -> study.resolve('blacklist.bed').exists() ? study.resolve('blacklist.bed') : [] }
    } else {
        ch_blacklist = channel.value([])
        ch_sheet = channel.value(file(input, checkIfExists: true))
        ch_fasta = channel.value([file(fasta, checkIfExists: true), file("${fasta}.fai", checkIfExists: true)])
        ch_vcf = channel.value([file(vcf, checkIfExists: true), file("${vcf}.tbi", checkIfExists: true)])
        if (aligner_index) {
            ch_index = channel.value([files(alignerIndexGlob(aligner, aligner_index), checkIfExists: true), file(aligner_index).name])
        } else {
            ALIGNER_INDEX(file(fasta), aligner)
            ch_index = ALIGNER_INDEX.out.index.map { index -> [index, file(fasta).baseName] }
        }
    }

    // bam/peaks come back as strings (the schema gives them no file-path format): they are
    // resolved here against the samplesheet's folder, as `caveat run` resolves them. The sheet
    // is read when its path is known (a task's output with simulate): nf-schema documents
    // samplesheetToList inside an operator (docs/samplesheets/samplesheetToList.md,
    // "Use as a channel operator").
    ch_rows = ch_sheet.map { sheet -> samplesheetRows(sheet, "${projectDir}/assets/schema_input.json") }

    // bulk samples (as before) and single-cell libraries (a row filling fragments or barcodes)
    ch_samples = ch_rows
        .flatMap { rows -> rows }
        .filter { row -> !row[0].library }
        .map { meta, bam, peaks, _fragments, _barcodes -> [meta, bam, siblingFile(bam, '.bai', "samtools index ${bam.name}"), peaks] }
    ch_libraries = ch_rows
        .flatMap { rows -> rows }
        .filter { row -> row[0].library }
        .map { meta, bam, _peaks, fragments, barcodes ->
            [meta, bam, siblingFile(bam, '.bai', "samtools index ${bam.name}"), fragments, siblingFile(fragments, '.tbi', "tabix -p bed ${fragments.name}"), barcodes]
        }

    // every distinct peaks file once, in samplesheet order; CLUSTER_PEAKS stages the i-th as
    // input_peaks/<i>/<name> (stageAs: 'input_peaks/?/*'), so two BEDs with one name never collide
    ch_peak_files = ch_rows.map { rows -> rows.collect { row -> row[2] }.findAll { peaks -> peaks }.unique() }
    // the libraries' files in samplesheet order: WASP_REMAP_STUDY stages the i-th library's barcode
    // table as barcodes/<i>/<name>, its BAM, fragments and their indexes as libraries/<i>/<name>
    ch_library_files = ch_rows.map { rows ->
        def libs = rows.findAll { row -> row[0].library }
        [
            libs.collect { row -> row[4] },
            libs.collect { row -> row[1] },
            libs.collect { row -> siblingFile(row[1], '.bai', "samtools index ${row[1].name}") },
            libs.collect { row -> row[3] },
            libs.collect { row -> siblingFile(row[3], '.tbi', "tabix -p bed ${row[3].name}") }
        ]
    }
    ch_library_ids = ch_rows.map { rows -> rows.findAll { row -> row[0].library }.collect { row -> row[0].id } }

    // the samplesheet with file names as they are staged in WASP_REMAP_STUDY (the libraries'
    // files) and CLUSTER_PEAKS (the peaks); bulk BAMs are not read from it
    ch_staged_sheet = ch_rows
        .combine(ch_peak_files.map { peak_files -> [peak_files] })
        .combine(ch_library_ids.map { ids -> [ids] })
        .map { rows, peak_files, ids ->
            rows.collect { meta, bam, peaks, fragments, barcodes -> stagedSheetLine(meta, bam, peaks, fragments, barcodes, peak_files, ids) }
        }
        .flatMap { lines -> lines }
        .collectFile(name: 'samplesheet.csv', seed: 'sample,donor,cell_type,bam,peaks,fragments,barcodes', newLine: true, sort: 'index')
        .first()

    // the run's samples table (caveat.single_cell.write_samples_table: the bulk rows, then the
    // libraries' donor × cell type groups), what every task that needs the run's samples reads
    WASP_REMAP_STUDY(
        ch_staged_sheet
            .combine(ch_library_files.map { files -> [files] })
            .map { sheet, files -> [[id: 'samples'], sheet] + files }
    )
    ch_samples_table = WASP_REMAP_STUDY.out.samples.map { _meta, table -> table }.first()

    // cell types in order of first appearance in the samples table (caveat.samplesheet.cell_types
    // of read_study's samples): the order of every per-cell-type target column (not named
    // `cell_types` in a `def`: a `def` of an emitted name would shadow the emit, see
    // tests/test_nextflow_runtime.py::test_no_workflow_declares_an_emitted_name_with_def)
    ch_cell_types = ch_samples_table.map { table -> samplesTableRows(table).collect { row -> row.cell_type }.unique() }
    // every sample's donor, sorted (the het sites of all of them are read once)
    ch_donors = ch_samples_table.map { table -> samplesTableRows(table).collect { row -> row.donor }.unique().sort() }
    // each library group: [sample, meta, number of libraries holding its cells]
    ch_groups = ch_samples_table.flatMap { table ->
        samplesTableRows(table).findAll { row -> row.source == 'library' }.collect { row ->
            [row.sample, [id: row.sample, donor: row.donor, cell_type: row.cell_type], row.libraries.tokenize(';').size()]
        }
    }
    // each library's donors (those of its groups), sorted: [library, donors]
    ch_library_donors = ch_samples_table.flatMap { table -> libraryDonors(samplesTableRows(table)) }

    emit:
    samples     = ch_samples       // [meta, bam, bai, peaks]: bulk samples
    libraries   = ch_libraries     // [meta(id, library: true, table_donor), bam, bai, fragments, tbi, barcodes]
    samplesheet = ch_samples_table // path: the samples table (bulk rows and library groups), peaks as CLUSTER_PEAKS stages them
    groups      = ch_groups        // [sample, meta, number of libraries]: each library group
    library_donors = ch_library_donors   // [library, donors]
    donors      = ch_donors        // list of every sample's donor, sorted
    peak_beds   = ch_peak_files    // the samplesheet's peaks files, each once (may be empty)
    cell_types  = ch_cell_types    // list of cell types
    fasta       = ch_fasta         // [fasta, fai]
    vcf         = ch_vcf           // [vcf, tbi]
    index       = ch_index         // [index files, prefix]
    blacklist   = ch_blacklist     // the simulated study's blacklist.bed, or [] (none, or the user's data)
}

// The samplesheet's rows, validated by nf-schema, as [meta, bam, peaks, fragments, barcodes]
// ([] where empty) with the files resolved as the local engine resolves them (samplesheetFile).
// samplesheetToList gives the schema's columns in order, an absent cell as [] (nf-schema
// SamplesheetConverter.formatEntry/processMeta: `inputObject != null ? inputObject : … []`).
// A row filling fragments or barcodes is a library (caveat.samplesheet.is_library_row): its meta
// is [id, library: true, table_donor] (table_donor: the row's donor of a one-donor library, or '').
def samplesheetRows(sheet, String schema) {
    def sheet_dir = sheet.parent
    return samplesheetToList(sheet, schema).collect { meta, bam, peaks, fragments, barcodes ->
        def library = fragments || barcodes
        [
            library ? [id: meta.id, library: true, table_donor: meta.donor ?: ''] : meta,
            samplesheetFile(bam, sheet_dir, meta.id),
            peaks ? samplesheetFile(peaks, sheet_dir, meta.id) : [],
            fragments ? samplesheetFile(fragments, sheet_dir, meta.id) : [],
            barcodes ? samplesheetFile(barcodes, sheet_dir, meta.id) : []
        ]
    }
}

// One row of the staged samplesheet (header sample,donor,cell_type,bam,peaks,fragments,barcodes):
// a bulk row's peaks as CLUSTER_PEAKS stages the i-th distinct file (input_peaks/<i>/<name>), a
// library's files as WASP_REMAP_STUDY stages the i-th library's (libraries/<i>/, barcodes/<i>/).
def stagedSheetLine(meta, bam, peaks, fragments, barcodes, peak_files, ids) {
    if (meta.library) {
        def i = ids.indexOf(meta.id) + 1
        return "${meta.id},${meta.table_donor},,libraries/${i}/${bam.name},,libraries/${i}/${fragments.name},barcodes/${i}/${barcodes.name}"
    }
    return "${meta.id},${meta.donor},${meta.cell_type},${bam.name},${peaks ? "input_peaks/${peak_files.indexOf(peaks) + 1}/${peaks.name}" : ''},,"
}

// The rows of a samples table (caveat.single_cell.write_samples_table) as maps keyed by its
// header, an empty cell as '' (Path.splitCsv: nextflow/splitter/SplitterEx.groovy splitCsv(Path,
// Map); CsvSplitter's parser is `new CsvParser(empty: '')`).
def samplesTableRows(table) {
    return table.splitCsv(header: true)
}

// [library, donors] of each library: the donors of the groups whose cells it holds (a group's
// `libraries` joined by ';'), sorted (caveat.single_cell.Study.library_donors, as a set: the
// WASP filter uses the union of their het sites whatever the order).
def libraryDonors(rows) {
    def donors = [:]
    rows.findAll { row -> row.source == 'library' }.each { row ->
        row.libraries.tokenize(';').each { lib -> donors[lib] = ((donors[lib] ?: []) + [row.donor]).unique().sort() }
    }
    return donors.collect { lib, names -> [lib, names] }
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
// "${path}" (Path.toString) drops them. `make` is the command that writes it.
def siblingFile(path, String suffix, String make) {
    def sibling = path.resolveSibling(path.name + suffix)
    if (!sibling.exists()) {
        error("${path.name}: its index ${sibling.name} is missing beside it (${make})")
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

// The index files of `prefix` in folder `dir` (a task's output folder), matched by file name
// with alignerIndexGlob's pattern, so both ways of giving an index stage the same files.
def alignerIndexFiles(dir, String aligner, String prefix) {
    def matcher = java.nio.file.FileSystems.getDefault().getPathMatcher("glob:" + alignerIndexGlob(aligner, prefix))
    def found = dir.listFiles().findAll { f -> matcher.matches(java.nio.file.Paths.get(f.name)) }.sort { f -> f.name }
    if (!found) {
        error("${dir}: no ${aligner} index ${prefix}.* in the simulated study")
    }
    return found
}
