"""The official inference's input budgets and SAM2 mask upsampling, apart from the model code (no torch),
so that the option declarations (momentseg.options) and the light webhook endpoint can read them."""

MAX_NEW_TOKENS = 128  # official MM:637, 742
# the official inference's pixel budgets (RVE:186-187, TVE:117-118, config min/max_pixels)
VIDEO_MIN_PIXELS = 4 * 4 * 28 * 28
VIDEO_MAX_PIXELS = 6 * 6 * 28 * 28
TSG_VIDEO_MAX_PIXELS = 8 * 8 * 28 * 28  # the official TVG evaluation (TVE:117-118)
IMAGE_MIN_PIXELS = 4 * 4 * 28 * 28
IMAGE_MAX_PIXELS = 16 * 16 * 28 * 28
# "official": the low-resolution logits bilinearly to the video size (sam2's own path); "direct": ours
MASK_UPSAMPLING = ("official", "direct")
