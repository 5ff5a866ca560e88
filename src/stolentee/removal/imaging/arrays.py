"""Array types shared by the image modules, and the one cast that OpenCV's results need."""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import NDArray

U8 = NDArray[np.uint8]
F32 = NDArray[np.float32]


def u8(image: object) -> U8:
    """Type an OpenCV result that is known to be a uint8 array (the cv2 stubs are generic)."""
    return cast(U8, image)
