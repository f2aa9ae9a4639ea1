# ADE20K 512x512 as mmseg's own base (mmseg::_base_/datasets/ade20k.py: random resize
# 0.5-2.0 of 2048x512, crop 512, flip, photometric distortion; test at 2048x512), with the
# labels loaded by LoadCheckedSegAnnotations: a missing label PNG, or one with values that are
# neither one of the 150 classes (after reduce_zero_label) nor 255, stops the run naming the file.
_base_ = 'mmseg::_base_/datasets/ade20k.py'
custom_imports = dict(imports=['partialnet_mm'], allow_failed_imports=False)

crop_size = (512, 512)
num_classes = 150
load_labels = dict(type='LoadCheckedSegAnnotations', num_classes=num_classes, ignore_index=255,
                   reduce_zero_label=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    load_labels,
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # PartialNet halves the map four times after its stride-4 stem: sides divisible by 32
    dict(type='ResizeToMultiple', size_divisor=32),
    load_labels,
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
