"""Joint layouts and their vocabulary, shared by data, training, evaluation and the host (no
imports: the board and the teacher's venv read them too)."""

#: MPII order: index i of every keypoint array and heatmap channel is MPII_JOINTS[i].
MPII_JOINTS = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)

#: Limbs drawn by the host and used to render synthetic figures, as (parent, child) indices.
MPII_SKELETON = (
    (0, 1), (1, 2), (2, 6), (5, 4), (4, 3), (3, 6), (6, 7), (7, 8), (8, 9),
    (10, 11), (11, 12), (12, 7), (15, 14), (14, 13), (13, 7),
)

#: Left/right pairs swapped by a horizontal flip.
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))


def flip_permutation(num_joints: int) -> list[int]:
    """Joint order after a horizontal flip: index i takes joint ``perm[i]``.

    68 joints are the iBUG face (:data:`FACE68_FLIP_PAIRS`); up to 16 are MPII or a prefix of
    it, where a pair swaps only when both its joints are present.

    Raises:
        ValueError: no layout has ``num_joints`` joints.
    """
    if num_joints == len(FACE68_JOINTS):
        return flip_permutation_of(FACE68_JOINTS)
    if 0 <= num_joints <= len(MPII_JOINTS):
        return flip_permutation_of(MPII_JOINTS[:num_joints])
    raise ValueError(f"no joint layout with {num_joints} joints to flip (MPII has "
                     f"{len(MPII_JOINTS)}, the iBUG face {len(FACE68_JOINTS)})")

#: PCK normaliser for MPII-16 in this project: the torso diagonal l_shoulder to r_hip (fallback
#: r_shoulder to l_hip), as implemented in codec.torso_size.

#: The 68 iBUG/300W face landmarks in file order (0-based; 36 and 45 are the outer eye corners).
FACE68_JOINTS = tuple(f"face68_{i}" for i in range(68))

#: Pairs of the 68 iBUG points swapped by a horizontal flip; the midline points (chin 8, nose
#: bridge and tip 27-30, nose base centre 33, lip centres 51, 57, 62, 66) map to themselves.
FACE68_FLIP_PAIRS = (
    (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),  # jaw
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),  # brows
    (31, 35), (32, 34),  # nose base
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),  # outer lip
    (60, 64), (61, 63), (65, 67),  # inner lip
)


def flip_permutation_of(joints: tuple[str, ...]) -> list[int]:
    """:func:`flip_permutation` by joint names, for any layout: iBUG face points swap by
    :data:`FACE68_FLIP_PAIRS`, names with a side (``l_``/``r_``, ``left_``/``right_``) swap
    with the same name on the other side; the rest map to themselves."""
    face = {}
    for a, b in FACE68_FLIP_PAIRS:
        face[FACE68_JOINTS[a]], face[FACE68_JOINTS[b]] = FACE68_JOINTS[b], FACE68_JOINTS[a]
    sides = (("l_", "r_"), ("r_", "l_"), ("left_", "right_"), ("right_", "left_"))
    index = {n: i for i, n in enumerate(joints)}
    perm = []
    for i, name in enumerate(joints):
        other = face.get(name)
        for this, that in sides:
            if other is None and name.startswith(this):
                other = that + name[len(this):]
        perm.append(index.get(other, i))
    return perm


def _chain(first: int, last: int, closed: bool = False) -> tuple[tuple[int, int], ...]:
    edges = tuple((i, i + 1) for i in range(first, last))
    return edges + ((last, first),) if closed else edges


#: Face outline drawn by the host: jaw, brows, nose bridge and base, closed eyes and lips.
FACE68_SKELETON = (
    _chain(0, 16) + _chain(17, 21) + _chain(22, 26) + _chain(27, 30) + _chain(31, 35)
    + _chain(36, 41, True) + _chain(42, 47, True) + _chain(48, 59, True) + _chain(60, 67, True)
)


def skeleton_of(joints: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Edges the host draws between a layout's joints: MPII limbs, the face outline, or
    none for a layout without one (its joints are drawn as points)."""
    joints = tuple(joints)
    if joints == MPII_JOINTS[: len(joints)]:
        return tuple((a, b) for a, b in MPII_SKELETON if max(a, b) < len(joints))
    if joints == FACE68_JOINTS:
        return FACE68_SKELETON
    return ()


#: COCO's 17 keypoint names, in COCO order.
COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

#: COCO-WholeBody's parts after the 17 body joints: annotation field -> joint names, in order.
#: Faces use the 68-point iBUG layout, so a face model shares its joints with them by name.
WHOLEBODY_PARTS = {
    "foot_kpts": tuple(f"{side}_{p}" for side in ("left", "right")
                       for p in ("big_toe", "small_toe", "heel")),
    "face_kpts": FACE68_JOINTS,
    **{f"{side}hand_kpts": (f"{side}_hand_root",) + tuple(
        f"{side}_{finger}{k}" for finger in ("thumb", "forefinger", "middle_finger",
                                               "ring_finger", "pinky_finger")
        for k in range(1, 5)) for side in ("left", "right")},
}

#: COCO's per-joint OKS falloff constants (COCOeval's ``kpt_oks_sigmas``), by joint name.
COCO_SIGMAS = dict(zip(COCO_JOINTS, (s / 10 for s in (
    .26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89))))


#: The 12 limb joints every body layout here names (MPII, COCO, COCO-WholeBody), canonical
#: spelling: a score over them compares networks whose layouts differ elsewhere (MPII's pelvis,
#: thorax, neck and head top; COCO's nose, eyes and ears).
LIMB_JOINTS = tuple(f"{side}_{part}" for side in ("left", "right")
                    for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"))


def canonical(name: str) -> str:
    """One spelling for a joint across layouts: ``l_knee`` and ``left_knee`` -> ``left_knee``."""
    name = name.strip().lower().replace(" ", "_").replace("-", "_")
    for short, long in (("l_", "left_"), ("r_", "right_")):
        if name.startswith(short):
            return long + name[len(short):]
    return name


def shared_joints(model_joints: tuple[str, ...], data_joints: tuple[str, ...]
                  ) -> list[tuple[int, int, str]]:
    """``(model index, data index, model's name)`` for every joint both layouts name."""
    data = {canonical(n): i for i, n in enumerate(data_joints)}
    return [(i, data[canonical(n)], n) for i, n in enumerate(model_joints)
            if canonical(n) in data]
