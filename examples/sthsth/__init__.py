"""Something-Something v2 pipeline: RGB video and optical flow, Video Swin-T per stream."""
