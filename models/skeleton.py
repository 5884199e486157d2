"""Joint layouts shared by data, training, evaluation and the host (no heavy imports)."""

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
    """Joint order after a horizontal flip: index i takes joint ``perm[i]``."""
    perm = list(range(num_joints))
    for a, b in MPII_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm

#: PCK normaliser for MPII-16 in this project: the torso diagonal l_shoulder to r_hip (fallback
#: r_shoulder to l_hip), as implemented in codec.torso_size.

#: The 68 iBUG/300W face landmarks in file order (0-based; 36 and 45 are the outer eye corners).
FACE68_JOINTS = tuple(f"face68_{i}" for i in range(68))
