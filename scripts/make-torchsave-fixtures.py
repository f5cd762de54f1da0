#!/usr/bin/python3
"""Small files written by Python's torch.save for test/35c.torchsave.test.ts (kiln.io.loadTorchStateDict),
into test/fixtures/torchsave/, with what each tensor holds in test/fixtures/torchsave.json.

  dtypes.pt      an OrderedDict (a real state_dict of a small module, so it carries _metadata) plus
                 one tensor per dtype Kiln supports, a transposed (non-contiguous) tensor, a
                 channels-last 4-D tensor, a view at a storage offset sharing its storage with
                 another entry, an nn.Parameter, and an empty tensor
  checkpoint.pt  {'model': state_dict, 'epoch': 3, 'optimizer': {...}}  (a training checkpoint)
  legacy.pt      a state dict in the legacy (pre-1.6, non-zip) format
  list.pt        a list of tensors
  module.pt      a whole pickled nn.Module (torch.save(model))
  int16.pt       a dict holding an int16 tensor (a dtype Kiln lacks)

  /usr/bin/python3 scripts/make-torchsave-fixtures.py
"""
import collections
import json
import os
import torch
from fixture_util import enc, rnd

OUT = 'test/fixtures/torchsave'


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    small = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    with torch.no_grad():
        small[1].running_mean.copy_(rnd(3)); small[1].running_var.copy_(rnd(3).abs() + 0.5); small[1].num_batches_tracked.fill_(5)
    sd = small.state_dict()  # an OrderedDict with _metadata
    base = rnd(4, 5)
    shared = rnd(10)
    extra = collections.OrderedDict([
        ('f32', rnd(2, 3)),
        ('f64', rnd(2, 3).double() + 1e-12),
        ('f16', rnd(2, 3).half()),
        ('bf16', rnd(2, 3).bfloat16()),
        ('i64', torch.tensor([[-(2 ** 40), 7], [3, -1]], dtype=torch.int64)),
        ('i32', torch.tensor([-5, 0, 2 ** 30], dtype=torch.int32)),
        ('u8', torch.tensor([0, 7, 255], dtype=torch.uint8)),
        ('bool', torch.tensor([True, False, True])),
        ('transposed', base.t()),
        ('channels_last', rnd(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)),
        ('shared', shared),
        ('view', shared[3:7]),
        ('param', torch.nn.Parameter(rnd(3))),
        ('empty', torch.zeros(0, 3)),
        ('scalar', torch.tensor(2.5)),
    ])
    assert not extra['transposed'].is_contiguous() and extra['view'].storage_offset() == 3
    for k, v in extra.items():
        sd[k] = v
    torch.save(sd, f'{OUT}/dtypes.pt')
    back = torch.load(f'{OUT}/dtypes.pt')
    assert list(back.keys()) == list(sd.keys())
    expected = {}
    for k, v in sd.items():
        e = enc(v.float() if v.dtype in (torch.float16, torch.bfloat16, torch.bool, torch.uint8) else v)
        e['dtype'] = str(v.dtype).replace('torch.', '')
        if v.dtype in (torch.float64, torch.float16, torch.bfloat16):
            e['data'] = v.double().flatten().tolist()  # exact (float32 is exact through 9 digits and fround)
        expected[k] = e
    torch.save({'model': small.state_dict(), 'epoch': 3, 'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1}]}}, f'{OUT}/checkpoint.pt')
    torch.save(small.state_dict(), f'{OUT}/legacy.pt', _use_new_zipfile_serialization=False)
    torch.save([rnd(2), rnd(2)], f'{OUT}/list.pt')
    torch.save(torch.nn.Linear(2, 2), f'{OUT}/module.pt')
    torch.save({'x': torch.tensor([1, 2], dtype=torch.int16)}, f'{OUT}/int16.pt')
    json.dump({'torch': torch.__version__, 'keys': list(sd.keys()), 'tensors': expected,
               'checkpointKeys': list(small.state_dict().keys())}, open('test/fixtures/torchsave.json', 'w'))
    print(f'wrote {OUT}/*.pt and test/fixtures/torchsave.json')


if __name__ == '__main__':
    main()
