use super::*;
use crate::synthetic_items;

const ITEM: f64 = 0.1238;

/// `values` with `bits` random bits flipped in every item (a re-recording of the same sound).
fn blurred(values: &[u32], bits: u32, seed: u32) -> Vec<u32> {
    let flips = synthetic_items(seed, values.len() * bits as usize);
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (0..bits as usize).fold(*v, |acc, k| {
                acc ^ (1 << (flips[i * bits as usize + k] % 32))
            })
        })
        .collect()
}

fn fp(values: Vec<u32>) -> Fingerprint {
    Fingerprint::new(ITEM, values).expect("valid")
}

fn exact() -> MatchSettings {
    MatchSettings {
        start_shift_secs: 0.0,
        end_extension_secs: 0.0,
        ..MatchSettings::default()
    }
}

#[test]
fn a_shared_stretch_is_found_at_its_offsets_in_both() {
    let shared = synthetic_items(7, 400);
    let mut a = synthetic_items(1, 150);
    a.extend(&shared);
    a.extend(synthetic_items(2, 80));
    let mut b = synthetic_items(3, 20);
    b.extend(blurred(&shared, 4, 9));
    b.extend(synthetic_items(4, 300));
    let found = shared_segments(&fp(a), &fp(b), &exact()).expect("same time base");
    assert_eq!(found.len(), 1, "{found:?}");
    let s = &found[0];
    for (got, want) in [
        (s.start, 150.0),
        (s.end, 550.0),
        (s.against_start, 20.0),
        (s.against_end, 420.0),
    ] {
        assert!(
            (got - want * ITEM).abs() <= 2.0 * ITEM,
            "{got} vs {} ({s:?})",
            want * ITEM
        );
    }
    assert!(
        s.confidence > 0.6 && s.confidence < 0.9,
        "4 of 32 bits differ: {s:?}"
    );
}

#[test]
fn unrelated_sound_shares_nothing_and_short_stretches_are_not_reported() {
    let found = shared_segments(
        &fp(synthetic_items(1, 900)),
        &fp(synthetic_items(2, 700)),
        &exact(),
    )
    .expect("ok");
    assert!(found.is_empty(), "{found:?}");
    let shared = synthetic_items(5, 40); // 5 s, under the 10 s minimum
    let mut a = synthetic_items(1, 100);
    a.extend(&shared);
    let mut b = shared.clone();
    b.extend(synthetic_items(2, 100));
    assert!(
        shared_segments(&fp(a), &fp(b), &exact())
            .expect("ok")
            .is_empty()
    );
}

#[test]
fn two_shared_stretches_and_a_short_gap_inside_one() {
    let (intro, credits) = (synthetic_items(11, 250), synthetic_items(12, 160));
    let mut inner = intro.clone();
    for v in &mut inner[100..104] {
        *v = !*v; // half a second of disagreement inside the intro
    }
    let mut a = synthetic_items(1, 60);
    a.extend(&inner);
    a.extend(synthetic_items(2, 500));
    a.extend(&credits);
    let mut b = intro.clone();
    b.extend(synthetic_items(3, 700));
    b.extend(&credits);
    b.extend(synthetic_items(4, 30));
    let found = shared_segments(&fp(a), &fp(b), &exact()).expect("ok");
    assert_eq!(
        found.len(),
        2,
        "the gap does not split the intro: {found:?}"
    );
    assert!(
        (found[0].start - 60.0 * ITEM).abs() <= 2.0 * ITEM,
        "{found:?}"
    );
    assert!((found[0].against_start).abs() <= 2.0 * ITEM, "{found:?}");
    assert!(
        (found[1].start - 810.0 * ITEM).abs() <= 2.0 * ITEM,
        "{found:?}"
    );
    assert!(
        (found[1].against_start - 950.0 * ITEM).abs() <= 2.0 * ITEM,
        "{found:?}"
    );
}

#[test]
fn time_bases_must_agree_and_empty_fingerprints_share_nothing() {
    let a = fp(synthetic_items(1, 10));
    let b = Fingerprint::new(0.2, synthetic_items(1, 10)).expect("valid");
    let err = shared_segments(&a, &b, &exact()).expect_err("mismatch");
    assert!(err.to_string().contains("different time bases"), "{err}");
    assert!(
        shared_segments(&fp(vec![]), &a, &exact())
            .expect("ok")
            .is_empty()
    );
}
