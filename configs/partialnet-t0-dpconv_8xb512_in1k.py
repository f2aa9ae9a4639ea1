# PartialNet-T0 with DPConv on ImageNet-1k: learn every block's split ratio (the paper's section 3.2).
# Flow: train this, export the ratios (tools/export_split_ratios.py CKPT --base-config
# configs/partialnet-t0_8xb512_in1k.py), then retrain the plain model they define.
_base_ = './partialnet-t0_8xb512_in1k.py'

model = dict(
    type='DPConvImageClassifier',
    # budget: the cost of split ratio 1/budget (1/4 = the paper's fixed ratio);
    # alpha: the multiplicative penalty's exponent (authors' config: -0.01)
    dpconv_loss=dict(budget=4, alpha=-0.01, order_weight=1.0),
    backbone=dict(dpconv=dict(init_scale=1e-8)))

# the learned ratio of every layer goes to the log each epoch
custom_hooks = [dict(type='DPConvRatioHook')]
# gates are not weight-decayed
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.gates.gate': dict(decay_mult=0.0)}))
