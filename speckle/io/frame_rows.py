"""Frames laid out in one buffer, each at its own start.

What a stream of chunks hands out where a file's frames are mapped in place but are not evenly
spaced: HDF5 puts nodes of its chunk index between the chunks it writes (a few KiB every 50-60
chunks of one frame), so a range of frames is one range of the file's bytes but not one
strided array. The compiled correlator reads such frames where they are; everything else takes
their evenly spaced runs (views) or a copy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FrameRows"]


class FrameRows:
    """Frame ``t`` is ``buffer[starts[t]:starts[t] + frame size]``, seen as ``frame_shape``.

    Parameters
    ----------
    buffer : ndarray, 1D
        The values (read-only where it maps a file).
    starts : ndarray of int, (n,)
        Where each frame starts in ``buffer``, in elements.
    frame_shape : tuple of int
        The shape of one frame.
    """

    def __init__(self, buffer: np.ndarray, starts, frame_shape):
        self.buffer = buffer
        self.starts = np.ascontiguousarray(starts, np.int64)
        self.frame_shape = tuple(int(v) for v in frame_shape)
        self.frame_size = int(np.prod(self.frame_shape))
        if buffer.ndim != 1 or self.starts.ndim != 1:
            raise ValueError("FrameRows needs a 1D buffer and 1D starts")
        if len(self.starts) and (self.starts.min() < 0 or
                                 self.starts.max() + self.frame_size > len(buffer)):
            raise ValueError("a frame of FrameRows lies outside its buffer")

    @property
    def dtype(self) -> np.dtype:
        return self.buffer.dtype

    @property
    def shape(self) -> tuple:
        return (len(self.starts), *self.frame_shape)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, frames: slice) -> "FrameRows":
        """Frames ``a:b`` (a slice with step 1), the same buffer."""
        if not isinstance(frames, slice) or frames.step not in (None, 1):
            raise TypeError("FrameRows takes a slice of frames with step 1")
        return FrameRows(self.buffer, self.starts[frames], self.frame_shape)

    def flat(self) -> "FrameRows":
        """The same frames, each seen as one row of pixels."""
        return FrameRows(self.buffer, self.starts, (self.frame_size,))

    def runs(self):
        """Yield ``(first, frames)``: the evenly spaced runs of frames in order, each a view
        (``(m, *frame_shape)``) of the buffer."""
        n, size = len(self.starts), self.frame_size
        breaks = np.flatnonzero(np.diff(self.starts) != size) + 1
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, n], strict=True):
            if b > a:
                begin = int(self.starts[a])
                yield int(a), self.buffer[begin:begin + (b - a) * size].reshape(
                    b - a, *self.frame_shape)

    def take(self, pixels) -> np.ndarray:
        """A (n, len(pixels)) copy of the pixels ``pixels`` (flat indices) of every frame."""
        return self.buffer[self.starts[:, None] + np.asarray(pixels, np.int64)[None, :]]

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, self.dtype)
        for first, run in self.runs():
            out[first:first + len(run)] = run
        return out if dtype is None else out.astype(dtype, copy=False)
