/*
 * TRACKS: Tn5 insertion bigWigs per sample and pseudobulk per cell type, then union
 * peaks, accessibility and the ubiquitous / cell-type specific clusters.
 */

include { INSERTIONS            } from '../../../modules/local/insertions/main'
include { INSERTIONS_PSEUDOBULK } from '../../../modules/local/insertions_pseudobulk/main'
include { INSERTIONS_SUMMARY    } from '../../../modules/local/insertions_summary/main'
include { CLUSTER_PEAKS         } from '../../../modules/local/cluster_peaks/main'

workflow TRACKS {
    take:
    samples               // [meta, bam, bai, peaks]
    wasp_bam              // [meta, bam, bai]: WASP-filtered BAMs
    samplesheet           // path: samplesheet with staged file names
    peak_beds             // list of the samplesheet's peaks files (as PREPARE_INPUTS.out.peak_beds), or []
    fasta                 // [fasta, fai]
    source                // string: 'wasp' (filtered BAMs) or 'raw' (input BAMs)
    cluster_assignments   // path, or [] when clusters are computed
    contig_map            // path, or []
    ldsc_bim              // .bim file(s), or []
    ldsc_bim_arg          // the --ldsc-bim path as the task sees it (ldsc_bim/<name>), or ''
    blacklist             // path, or []: union peaks overlapping it are dropped

    main:
    ch_raw = samples.map { meta, bam, bai, _peaks -> [meta, bam, bai] }
    // 'raw' (default): the input BAMs, so INSERTIONS does not wait for WASP_REMAP; 'wasp': the filtered BAMs
    ch_bam = source == 'raw' ? ch_raw : wasp_bam
    INSERTIONS(ch_bam, fasta)

    ch_cell_type_tracks = INSERTIONS.out.bigwig
        .map { meta, bigwig -> [meta.cell_type, bigwig] }
        .groupTuple(sort: true)
        .map { cell_type, bigwigs -> [[id: cell_type], bigwigs] }
    INSERTIONS_PSEUDOBULK(ch_cell_type_tracks, fasta)

    ch_insertions_summary_in = INSERTIONS.out.stats
        .mix(INSERTIONS_PSEUDOBULK.out.stats)
        .map { _meta, json -> json }
        .toSortedList()
        .map { stats -> [stats] }   // combine concatenates list items: keep the list one element
        .combine(samplesheet)
        .map { stats, sheet -> [[id: 'insertions'], stats, sheet] }
    INSERTIONS_SUMMARY(ch_insertions_summary_in)

    ch_all_tracks = INSERTIONS.out.bigwig
        .mix(INSERTIONS_PSEUDOBULK.out.bigwig)
        .map { _meta, bigwig -> bigwig }
        .toSortedList()
    // the peaks files in the order the samplesheet's input_peaks/<i>/<name> paths count them
    ch_cluster_in = samplesheet
        .combine(ch_all_tracks.map { tracks -> [tracks] })
        .combine(peak_beds.map { beds -> [beds] })
        .map { sheet, tracks, beds -> [[id: 'all'], sheet, tracks, beds] }
    CLUSTER_PEAKS(ch_cluster_in, fasta, cluster_assignments, contig_map, ldsc_bim, ldsc_bim_arg, blacklist)

    emit:
    bigwig       = INSERTIONS.out.bigwig              // [meta, sample bigWig]
    pseudobulk   = INSERTIONS_PSEUDOBULK.out.bigwig   // [meta(id: cell type), pseudobulk bigWig]
    peaks        = CLUSTER_PEAKS.out.peaks            // [meta, peaks.parquet]
    donor_counts = CLUSTER_PEAKS.out.donor_counts     // [meta, peaks_donor_counts.parquet]
    summary      = CLUSTER_PEAKS.out.summary          // [meta, cluster_peaks.summary.json]
    insertions_summary = INSERTIONS_SUMMARY.out.summary   // [meta, insertions.summary.json]
    called_peaks = CLUSTER_PEAKS.out.called_peaks     // [meta, MACS3 peaks]
    ldsc         = CLUSTER_PEAKS.out.ldsc             // [meta, ldsc/]
}
