use super::*;

#[test]
fn part_sizes_are_equal_and_bounded() {
    let p = MultipartPolicy {
        threshold: 64 * MIB,
        part_size: 16 * MIB,
    };
    assert_eq!(p.part_size_for(100 * MIB), 16 * MIB);
    // 1 TiB needs parts over 100 MiB to stay within 10 000.
    let tib = 1024 * 1024 * MIB;
    let part = p.part_size_for(tib);
    assert!(tib.div_ceil(part) <= MAX_PARTS);
    assert_eq!(part % MIB, 0);
    let small = MultipartPolicy {
        threshold: 0,
        part_size: 1,
    };
    assert_eq!(small.part_size_for(12 * MIB), MIN_PART);
}

#[test]
fn etag_shapes() {
    assert!(looks_like_md5_etag("9e107d9d372bb6826bd81d3542a419d6"));
    assert!(looks_like_md5_etag("9e107d9d372bb6826bd81d3542a419d6-3"));
    assert!(!looks_like_md5_etag("abc"));
    assert!(!looks_like_md5_etag("9e107d9d372bb6826bd81d3542a419d6-"));
}
