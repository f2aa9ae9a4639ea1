"""The classes of the generated sets, apart from the generators, so that registering the
datasets does not import the modules ``python -m`` runs (``synthetic_coco``, ``synthetic_seg``)."""

SHAPES = ('circle', 'square', 'triangle')  # the COCO set's categories, in id order
SEG_CLASSES = ('background',) + SHAPES     # the segmentation set's labels 0..3
SEG_PALETTE = [(0, 0, 0), (220, 20, 60), (0, 128, 255), (255, 190, 0)]
