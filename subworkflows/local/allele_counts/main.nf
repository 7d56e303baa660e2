/*
 * ALLELE_COUNTS: every donor's het sites from the VCF (once), the WASP remapping filter
 * scattered per sample and per group of contigs (WASP_REMAP_PLAN, once per run: the contigs
 * with reads, in header order, up to wasp_group_bp bases per group), gathered per sample
 * (filtered BAM + the filter's figures), then allele counting per sample. A single-cell
 * library is filtered like a sample (once, at its pooled donors' het sites, dedup per barcode),
 * counted per donor × cell type of its barcode table (COUNT_ALLELES_LIBRARY), and each group's
 * tables are summed over the libraries holding its cells (COUNT_ALLELES_MERGE), as the local
 * engine's wasp_remap and count_alleles steps do.
 */

include { WASP_REMAP_SITES  } from '../../../modules/local/wasp_remap_sites/main'
include { WASP_REMAP_PLAN   } from '../../../modules/local/wasp_remap_plan/main'
include { WASP_REMAP        } from '../../../modules/local/wasp_remap/main'
include { WASP_REMAP_GATHER } from '../../../modules/local/wasp_remap_gather/main'
include { WASP_REMAP_SUMMARY } from '../../../modules/local/wasp_remap_summary/main'
include { COUNT_ALLELES     } from '../../../modules/local/count_alleles/main'
include { COUNT_ALLELES_LIBRARY } from '../../../modules/local/count_alleles_library/main'
include { COUNT_ALLELES_MERGE   } from '../../../modules/local/count_alleles_merge/main'
include { COUNT_ALLELES_SUMMARY } from '../../../modules/local/count_alleles_summary/main'

workflow ALLELE_COUNTS {
    take:
    samples      // [meta, bam, bai, peaks]: bulk samples
    libraries    // [meta(id, library: true, table_donor), bam, bai, fragments, tbi, barcodes]: single-cell libraries
    library_donors   // [library, donors]: each library's pooled donors (PREPARE_INPUTS)
    groups       // [sample, meta, number of libraries]: each library group (PREPARE_INPUTS)
    donors       // list of every sample's donor, sorted (PREPARE_INPUTS)
    fasta        // [fasta, fai]
    vcf          // [vcf, tbi]
    index        // [index files, prefix]
    contig_map   // path, or []

    main:
    // donors sorted (bulk rows' and library groups'): het_snps.parquet is sorted by donor whatever
    // the order, and a stable order keeps the task's inputs (and so -resume) stable
    ch_donors = donors.map { names -> [[id: 'het_sites'], names] }
    WASP_REMAP_SITES(ch_donors, fasta, vcf, contig_map)

    // what WASP filters: bulk samples [meta, bam, bai, []] and libraries [meta + donors, bam, bai,
    // barcode table] (a library's meta gains the donors pooled in it, joined by library id)
    ch_lib_barcodes = libraries.map { meta, _bam, _bai, _fragments, _tbi, barcodes -> [meta.id, barcodes] }
    ch_filter_in = samples
        .map { meta, bam, bai, _peaks -> [meta, bam, bai, []] }
        .mix(
            libraries
                .map { meta, bam, bai, _fragments, _tbi, barcodes -> [meta.id, meta, bam, bai, barcodes] }
                .join(library_donors)
                .map { _id, meta, bam, bai, barcodes, names -> [meta + [donors: names], bam, bai, barcodes] }
        )
    // a value channel already (every input of WASP_REMAP_SITES is a value): no `.first()`
    ch_sites = WASP_REMAP_SITES.out.sites
        .map { _meta, snps, indels -> [snps, indels] }

    // one plan for the run, from every BAM's index (sorted by sample: stable task inputs for
    // -resume); it also checks the BAMs' contigs against the .fai, so WASP_REMAP needs no FASTA
    ch_plan_in = ch_filter_in
        .map { meta, bam, bai, _barcodes -> [meta.id, bam, bai] }
        .toSortedList { a, b -> a[0] <=> b[0] }
        .map { rows -> [[id: 'wasp_groups'], rows.collect { row -> row[1] }, rows.collect { row -> row[2] }] }
    WASP_REMAP_PLAN(ch_plan_in, fasta.map { _fa, fai -> fai })
    // [[group_id, [contig, …]], …]: one value (toList), the same groups for every sample
    ch_groups = WASP_REMAP_PLAN.out.groups
        .map { _meta, tsv -> tsv }
        .splitCsv(sep: '\t', header: true)
        .map { row -> [row.group_id, row.contigs.tokenize(',')] }
        .toList()

    // one task per sample × group. The sample's key carries its number of groups
    // (groupKey(meta, n)): groupTuple then emits a sample's parts as soon as its n-th arrives,
    // so its gather starts while other samples still run, instead of after every WASP_REMAP
    // task (nextflow-io/nextflow GroupTupleOp.collect: `final sz = size ?: sizeBy(key)`, and
    // sizeBy reads GroupKey.getGroupSize(); docs/reference/operator.mdx, groupTuple: "you can
    // use the built-in groupKey() function, which allows you to define a different expected
    // size for each group"; docs/snippets/grouptuple-groupkey.nf unwraps it with
    // getGroupTarget()). A GroupKey equals its target (GroupKey.equals), so the join below,
    // on plain meta maps, is unaffected.
    ch_units = ch_filter_in
        .combine(ch_groups.map { contig_groups -> [contig_groups] })   // combine concatenates list items: keep the list one element
        .flatMap { meta, bam, bai, barcodes, contig_groups ->
            contig_groups.collect { group_id, contigs -> [meta, bam, bai, barcodes, group_id, contigs] }
        }
    WASP_REMAP(ch_units, ch_sites, index)

    // the gather orders the parts by the BAM header's contigs itself: sorting here only
    // keeps the task's inputs (and so -resume) stable
    ch_gather = WASP_REMAP.out.bam
        .map { meta, group_id, bam, _bai -> [meta, group_id, bam] }
        .join(WASP_REMAP.out.stats, by: [0, 1])
        .combine(ch_groups.map { contig_groups -> contig_groups.size() })
        .map { meta, _group_id, bam, stats, n_groups -> [groupKey(meta, n_groups), bam, stats] }
        .groupTuple(sort: true)
        .map { key, bams, stats -> [key.getGroupTarget(), bams, stats] }
    WASP_REMAP_GATHER(ch_gather)

    ch_wasp_summary_in = WASP_REMAP_GATHER.out.stats
        .map { _meta, stats -> stats }
        .toSortedList()
        .map { stats -> [stats] }   // combine concatenates list items: keep the list one element
        .combine(WASP_REMAP_SITES.out.summary.map { _meta, json -> json })
        .map { stats, sites -> [[id: 'wasp_remap'], stats, sites] }
    WASP_REMAP_SUMMARY(ch_wasp_summary_in)

    ch_snps = ch_sites.map { snps, _indels -> snps }
    COUNT_ALLELES(WASP_REMAP_GATHER.out.bam.filter { row -> !row[0].library }, ch_snps)

    // a library: counts per group of its barcode table, then each group's tables summed over its
    // libraries. A group's key carries its number of libraries (groupKey, as the gather above),
    // so its merge starts once its last library is counted.
    COUNT_ALLELES_LIBRARY(
        WASP_REMAP_GATHER.out.bam
            .filter { row -> row[0].library }
            .map { meta, bam, bai -> [meta.id, meta, bam, bai] }
            .join(ch_lib_barcodes)
            .map { _id, meta, bam, bai, barcodes -> [meta, bam, bai, barcodes] },
        ch_snps
    )
    ch_merge_in = COUNT_ALLELES_LIBRARY.out.groups
        .flatMap { _meta, tables -> (tables instanceof List ? tables : [tables]).collect { table -> [table.name - ~/\.parquet$/, table] } }
        .combine(groups, by: 0)
        .map { _sample, table, meta, n_libraries -> [groupKey(meta, n_libraries), table] }
        .groupTuple(sort: true)
        .map { key, tables -> [key.getGroupTarget(), tables] }
    COUNT_ALLELES_MERGE(ch_merge_in)

    ch_counts = COUNT_ALLELES.out.counts.mix(COUNT_ALLELES_MERGE.out.counts)
    ch_count_summary_in = ch_counts
        .map { _meta, parquet -> parquet }
        .toSortedList()
        .map { parquets -> [[id: 'count_alleles'], parquets] }
    COUNT_ALLELES_SUMMARY(ch_count_summary_in)

    emit:
    het_snps   = WASP_REMAP_SITES.out.sites.map { meta, snps, _indels -> [meta, snps] }   // [meta, het_snps.parquet]
    het_indels = WASP_REMAP_SITES.out.sites.map { meta, _snps, indels -> [meta, indels] } // [meta, het_indels.parquet]
    wasp_bam   = WASP_REMAP_GATHER.out.bam     // [meta, bam, bai]: bulk samples and libraries (meta.library)
    wasp_stats = WASP_REMAP_GATHER.out.stats   // [meta, stats.json]
    counts     = ch_counts                     // [meta, counts/<sample>.parquet]: bulk samples and library groups
    summaries  = WASP_REMAP_SUMMARY.out.summary.mix(COUNT_ALLELES_SUMMARY.out.summary)   // [meta, <step>.summary.json]
}
