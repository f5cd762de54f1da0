#!/usr/bin/python3
"""Peer timing for the automatic augmentation policies: torchvision 0.14 per image on uint8 tensors, one thread.

    OMP_NUM_THREADS=1 /usr/bin/python3 bench/peers/autoaugment.py

Kiln's side (the same batch, 128 RGB 32x32) is printed by test/13.autoaugment.test.ts and, for AugMix,
test/13b.augmix.test.ts ("throughput").
"""
import time, torch
from torchvision import transforms as TT
torch.set_num_threads(1)
torch.manual_seed(0)
u8 = (torch.rand(128, 3, 32, 32) * 255).to(torch.uint8)
f = torch.rand(128, 3, 32, 32)
for name, t in [('TrivialAugmentWide', TT.TrivialAugmentWide()), ('RandAugment', TT.RandAugment()), ('AutoAugment cifar10', TT.AutoAugment(TT.AutoAugmentPolicy.CIFAR10)), ('AugMix', TT.AugMix())]:
    for _ in range(2): [t(im) for im in u8]
    t0 = time.perf_counter(); reps = 5
    for _ in range(reps): torch.stack([t(im) for im in u8])
    ms = (time.perf_counter() - t0) / reps * 1e3
    print(f'{name} per image on uint8: {ms:.1f} ms per 128 ({128000/ms:.0f} images/s)')
