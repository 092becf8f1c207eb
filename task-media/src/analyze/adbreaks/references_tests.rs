use super::*;

const X264: Sequence = Sequence {
    max_frame_num: 16,
    max_refs: 4,
    order: OrderType::Lsb(64),
};

fn slice(kind: SliceKind, l0: Vec<Modification>) -> SliceLists {
    SliceLists {
        kind,
        l0_active: 1,
        l1_active: u32::from(kind == SliceKind::Bipredicted),
        l0_modifications: l0,
        l1_modifications: Vec::new(),
    }
}

fn picture(reference: bool, frame_num: u32, poc_lsb: u32, slices: Vec<SliceLists>) -> Picture {
    Picture {
        reference,
        frame_num,
        poc_lsb,
        poc_bottom_delta: 0,
        slices,
        marking: Marking::SlidingWindow,
    }
}

fn idr() -> Picture {
    Picture {
        marking: Marking::Idr,
        ..picture(true, 0, 0, vec![slice(SliceKind::Intra, vec![])])
    }
}

fn p(frame_num: u32, lsb: u32, modification: Option<u32>) -> Picture {
    let l0 = modification
        .map(Modification::Subtract)
        .into_iter()
        .collect();
    picture(true, frame_num, lsb, vec![slice(SliceKind::Predicted, l0)])
}

fn b(reference: bool, frame_num: u32, lsb: u32, unmark: Vec<u32>) -> Picture {
    Picture {
        marking: if unmark.is_empty() {
            Marking::SlidingWindow
        } else {
            Marking::Unmark(unmark)
        },
        ..picture(
            reference,
            frame_num,
            lsb,
            vec![slice(SliceKind::Bipredicted, vec![])],
        )
    }
}

/// The first pictures of the bench asset in decode order, as ffmpeg's `trace_headers` showed
/// them: x264 veryfast, B-frames as references, each P-frame's list moved to the previous
/// P-frame, each referenced B-frame dropping the references nothing needs any more.
fn x264_pyramid() -> Vec<Picture> {
    vec![
        idr(),
        p(1, 8, None),
        b(true, 2, 4, vec![]),
        b(false, 3, 2, vec![]),
        b(false, 3, 6, vec![]),
        p(3, 14, Some(1)),
        b(true, 4, 10, vec![3, 1]),
        b(false, 5, 12, vec![]),
        p(5, 20, Some(1)),
        b(true, 6, 16, vec![4, 1]),
        b(false, 7, 18, vec![]),
    ]
}

#[test]
fn x264_p_frames_refer_to_p_frames_only() {
    let refs = references(&X264, &x264_pyramid()).expect("replayed");
    let expected: Vec<Vec<usize>> = vec![
        vec![],
        vec![0],
        vec![0, 1],
        vec![0, 2],
        vec![1, 2],
        vec![1],
        vec![1, 5],
        vec![5, 6],
        vec![5],
        vec![5, 8],
        vec![8, 9],
    ];
    assert_eq!(refs, expected);
    // With picture 9 analysed, the B-frames used as references (2 and 6) are needed by nothing.
    let needed = needed(&refs, |i| i >= 9);
    let kept: Vec<usize> = (0..needed.len()).filter(|&i| needed[i]).collect();
    assert_eq!(kept, vec![0, 1, 5, 8, 9, 10]);
}

#[test]
fn the_sliding_window_drops_the_oldest_reference() {
    let sequence = Sequence {
        max_refs: 2,
        ..X264
    };
    let two = |frame_num, lsb| Picture {
        slices: vec![SliceLists {
            l0_active: 2,
            ..slice(SliceKind::Predicted, vec![])
        }],
        ..p(frame_num, lsb, None)
    };
    let pictures = vec![idr(), two(1, 2), two(2, 4), two(3, 6)];
    let refs = references(&sequence, &pictures).expect("replayed");
    // Picture 3 sees 2 and 1: the IDR went when picture 2 was marked.
    assert_eq!(refs[3], vec![1, 2]);
    assert_eq!(refs[2], vec![0, 1]);
}

#[test]
fn frame_numbers_wrap() {
    let mut pictures = vec![idr()];
    for n in 1..=17u32 {
        pictures.push(p(n % 16, (2 * n) % 64, None));
    }
    let refs = references(&X264, &pictures).expect("replayed");
    // frame_num 0 after 15: its list's first entry is the picture with frame_num 15.
    assert_eq!(refs[16], vec![15]);
    assert_eq!(refs[17], vec![16]);
}

#[test]
fn list_one_is_swapped_when_it_equals_list_zero() {
    // Both held pictures come after the current one in output order: both lists start with
    // the nearer one, so list 1 starts with the other.
    let pictures = vec![idr(), p(1, 8, None), p(2, 12, None), {
        let mut current = b(false, 3, 4, vec![]);
        current.slices[0].kind = SliceKind::Bipredicted;
        current
    }];
    let sequence = Sequence {
        max_refs: 2,
        ..X264
    };
    let refs = references(&sequence, &pictures).expect("replayed");
    assert_eq!(refs[3], vec![1, 2]);
}

#[test]
fn what_the_replay_cannot_be_sure_of_is_refused() {
    let refused = |pictures: Vec<Picture>| references(&X264, &pictures).err();
    assert!(refused(vec![p(1, 2, None)]).is_some(), "no IDR first");
    assert!(
        refused(vec![idr(), p(2, 2, None)]).is_some(),
        "a frame_num gap"
    );
    assert!(
        refused(vec![idr(), p(1, 2, Some(5))]).is_some(),
        "names an unheld picture"
    );
    assert!(
        refused(vec![idr(), b(true, 1, 2, vec![7])]).is_some(),
        "unmarks an unheld picture"
    );
    let mut wide = p(1, 2, None);
    wide.slices[0].l0_active = 0;
    assert!(refused(vec![idr(), wide]).is_some(), "an empty list");
    let mut over = idr();
    over.poc_lsb = 64;
    assert!(refused(vec![over]).is_some(), "lsb out of range");
}

#[test]
fn order_type_two_follows_frame_num() {
    let sequence = Sequence {
        order: OrderType::FrameNum,
        ..X264
    };
    // A B-slice in output order = decode order: list 0 holds the latest earlier picture.
    let pictures = vec![idr(), p(1, 0, None), b(false, 2, 0, vec![])];
    let refs = references(&sequence, &pictures).expect("replayed");
    assert_eq!(refs[2], vec![0, 1]);
}
