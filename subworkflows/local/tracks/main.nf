/*
 * TRACKS: Tn5 insertion bigWigs per sample and pseudobulk per cell type, then union
 * peaks, accessibility and the ubiquitous / cell-type specific clusters. The single-cell
 * libraries' donor × cell type groups get their tracks from the fragments files (one
 * INSERTIONS_FRAGMENTS task over every library); a cell type's pseudobulk sums all its samples'
 * tracks, bulk and single-cell alike (the local engine's insertions step).
 */

include { INSERTIONS            } from '../../../modules/local/insertions/main'
include { INSERTIONS_FRAGMENTS  } from '../../../modules/local/insertions_fragments/main'
include { INSERTIONS_PSEUDOBULK } from '../../../modules/local/insertions_pseudobulk/main'
include { INSERTIONS_SUMMARY    } from '../../../modules/local/insertions_summary/main'
include { CLUSTER_PEAKS         } from '../../../modules/local/cluster_peaks/main'

workflow TRACKS {
    take:
    samples               // [meta, bam, bai, peaks]: bulk samples
    libraries             // [meta, bam, bai, fragments, tbi, barcodes]: single-cell libraries
    groups                // [sample, meta, number of libraries]: the libraries' groups
    wasp_bam              // [meta, bam, bai]: WASP-filtered BAMs (libraries' too: meta.library)
    samplesheet           // path: the samples table (PREPARE_INPUTS), peaks as CLUSTER_PEAKS stages them
    peak_beds             // list of the samplesheet's peaks files (as PREPARE_INPUTS.out.peak_beds), or []
    fasta                 // [fasta, fai]
    source                // string: 'wasp' (filtered BAMs) or 'raw' (input BAMs)
    cluster_assignments   // path, or [] when clusters are computed
    contig_map            // path, or []
    ldsc_bim              // .bim file(s), or []
    ldsc_bim_arg          // the --ldsc-bim path as the task sees it (ldsc_bim/<name>), or ''
    blacklist             // path, or []: union peaks overlapping it are dropped
    cell_type_peaks       // params.cell_type_peaks' files (<cell_type>.bed), or []

    main:
    ch_raw = samples.map { meta, bam, bai, _peaks -> [meta, bam, bai] }
    // 'raw' (default): the input BAMs, so INSERTIONS does not wait for WASP_REMAP; 'wasp': the filtered BAMs
    ch_bam = source == 'raw' ? ch_raw : wasp_bam.filter { row -> !row[0].library }
    INSERTIONS(ch_bam, fasta)

    // every library at once, in samplesheet order (sorted by id: stable task inputs for -resume);
    // a one-donor library whose table has no donor column passes its row's donor. Without
    // libraries the list is empty and the filter binds STOP (Nextflow OperatorImpl.filter on a
    // value: `target.bind(result ? it : Channel.STOP)`): no INSERTIONS_FRAGMENTS task
    ch_fragments_in = libraries
        .toSortedList { a, b -> a[0].id <=> b[0].id }
        .filter { libs -> libs }
        .map { libs ->
            [[id: 'libraries'], libs.collect { lib -> lib[3] }, libs.collect { lib -> lib[4] }, libs.collect { lib -> lib[5] },
             libs.collect { lib -> lib[0].id }, libs.findAll { lib -> lib[0].table_donor }.collect { lib -> "${lib[0].id}=${lib[0].table_donor}" }]
        }
    INSERTIONS_FRAGMENTS(ch_fragments_in, fasta)
    // each group's track and figures, with its meta (cell type) from the samples table
    ch_group_tracks = INSERTIONS_FRAGMENTS.out.bigwig
        .flatMap { _meta, tracks -> (tracks instanceof List ? tracks : [tracks]).collect { track -> [track.name - ~/\.bw$/, track] } }
        .combine(groups, by: 0)
        .map { _sample, track, meta, _n -> [meta, track] }
    ch_group_stats = INSERTIONS_FRAGMENTS.out.stats
        .flatMap { meta, stats -> (stats instanceof List ? stats : [stats]).collect { json -> [meta, json] } }

    ch_cell_type_tracks = INSERTIONS.out.bigwig
        .mix(ch_group_tracks)
        .map { meta, bigwig -> [meta.cell_type, bigwig] }
        .groupTuple(sort: true)
        .map { cell_type, bigwigs -> [[id: cell_type], bigwigs] }
    INSERTIONS_PSEUDOBULK(ch_cell_type_tracks, fasta)

    ch_insertions_summary_in = INSERTIONS.out.stats
        .mix(ch_group_stats, INSERTIONS_PSEUDOBULK.out.stats)
        .map { _meta, json -> json }
        .toSortedList()
        .map { stats -> [stats] }   // combine concatenates list items: keep the list one element
        .combine(samplesheet)
        .map { stats, sheet -> [[id: 'insertions'], stats, sheet] }
    INSERTIONS_SUMMARY(ch_insertions_summary_in)

    ch_all_tracks = INSERTIONS.out.bigwig
        .mix(ch_group_tracks, INSERTIONS_PSEUDOBULK.out.bigwig)
        .map { _meta, bigwig -> bigwig }
        .toSortedList()
    // the peaks files in the order the samplesheet's input_peaks/<i>/<name> paths count them
    ch_cluster_in = samplesheet
        .combine(ch_all_tracks.map { tracks -> [tracks] })
        .combine(peak_beds.map { beds -> [beds] })
        .map { sheet, tracks, beds -> [[id: 'all'], sheet, tracks, beds] }
    CLUSTER_PEAKS(ch_cluster_in, fasta, cluster_assignments, contig_map, ldsc_bim, ldsc_bim_arg, blacklist, cell_type_peaks)

    emit:
    bigwig       = INSERTIONS.out.bigwig.mix(ch_group_tracks)   // [meta, sample bigWig]: bulk samples and library groups
    pseudobulk   = INSERTIONS_PSEUDOBULK.out.bigwig   // [meta(id: cell type), pseudobulk bigWig]
    peaks        = CLUSTER_PEAKS.out.peaks            // [meta, peaks.parquet]
    donor_counts = CLUSTER_PEAKS.out.donor_counts     // [meta, peaks_donor_counts.parquet]
    summary      = CLUSTER_PEAKS.out.summary          // [meta, cluster_peaks.summary.json]
    insertions_summary = INSERTIONS_SUMMARY.out.summary   // [meta, insertions.summary.json]
    called_peaks = CLUSTER_PEAKS.out.called_peaks     // [meta, MACS3 peaks]
    ldsc         = CLUSTER_PEAKS.out.ldsc             // [meta, ldsc/]
}
