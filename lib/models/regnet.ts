/**
 * torchvision's RegNets (Radosavovic et al. 2020, "Designing Network Design Spaces"): RegNetX and RegNetY (with
 * squeeze-excitation) from 400 MF to 32 GF, with torchvision's module tree and state_dict keys
 * (stem.0.weight, trunk_output.block2.block2-0.f.b.0.weight, …f.se.fc1.weight, …proj.1.running_mean, fc.weight), so its
 * weights load strictly. The per-stage widths and depths come from the quantised linear rule of the paper, as
 * torchvision's BlockParams.from_init_params computes them (float32 arithmetic, round half to even).
 */
import { Tensor } from '../tensor/tensor';
import { tidy } from '../tensor/memory';
import { invalidParameterError } from '../errors';
import { Module, ModuleSpec } from '../nn/module';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, ReLU, Sigmoid } from '../nn/layers';
import { Sequential } from '../nn/containers';
import { specsOf } from '../nn/spec';
import { normal_, ones_, zeros_ } from '../nn/init';
import { convNormActivation, makeDivisible, SqueezeExcitation } from './blocks';
import { ModelOptions } from './small';

/** Round half to even (torch.round, Python's round). */
function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A RegNet's design parameters (the paper's d, w0, wa, wm, g; SE ratio for RegNetY). */
interface Design {
  depth: number;
  w0: number;
  wa: number;
  wm: number;
  groupWidth: number;
  seRatio?: number;
}

/** Per-stage widths, depths and group widths of a design (torchvision's BlockParams.from_init_params, bottleneck 1). */
export function regnetStages(d: Design): { widths: number[]; depths: number[]; groupWidths: number[] } {
  const f = Math.fround;
  const logWm = f(Math.log(d.wm));
  const blockWidths = Array.from({ length: d.depth }, (_, i) => {
    const cont = f(f(i * f(d.wa)) + d.w0);
    const capacity = roundEven(f(f(Math.log(f(cont / d.w0))) / logWm));
    return roundEven(f(f(d.w0 * f(Math.pow(d.wm, capacity))) / 8)) * 8;
  });
  const widths: number[] = [], depths: number[] = [];
  for (const w of blockWidths) {
    if (widths[widths.length - 1] === w) depths[depths.length - 1]++;
    else {
      widths.push(w);
      depths.push(1);
    }
  }
  const groupWidths = widths.map((w) => Math.min(d.groupWidth, w));
  return { widths: widths.map((w, i) => makeDivisible(w, groupWidths[i])), depths, groupWidths };
}

/** RegNet's residual block: `activation(proj(x) + f(x))` (or `x + f(x)`), f = 1×1 → grouped 3×3 (stride) → SE → 1×1. */
export class ResBottleneckBlock extends Module {
  readonly proj: Sequential | null;
  readonly f: Sequential;
  readonly activation: ReLU;
  constructor(widthIn: number, widthOut: number, stride: number, groupWidth: number, seRatio?: number) {
    super();
    this.proj = widthIn !== widthOut || stride !== 1 ? this.registerModule('proj', convNormActivation(widthIn, widthOut, 1, { stride, activation: null })) : null;
    const parts: Record<string, Module> = {
      a: convNormActivation(widthIn, widthOut, 1, { activation: new ReLU() }),
      b: convNormActivation(widthOut, widthOut, 3, { stride, groups: Math.floor(widthOut / groupWidth), activation: new ReLU() }),
    };
    if (seRatio) parts.se = new SqueezeExcitation(widthOut, roundEven(seRatio * widthIn), new ReLU(), new Sigmoid());
    parts.c = convNormActivation(widthOut, widthOut, 1, { activation: null });
    this.f = this.registerModule('f', new Sequential(parts));
    this.activation = this.registerModule('activation', new ReLU());
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.activation.call((this.proj ? this.proj.call(x) : x).add(this.f.call(x))));
  }
  override toSpec(): ModuleSpec | null {
    const main = this.f.toSpec(), shortcut = this.proj ? this.proj.toSpec() : null, post = this.activation.toSpec();
    if (!main || (this.proj && !shortcut)) return null;
    return { op: 'residual', main, shortcut, post };
  }
}

/** torchvision's designs by name. */
const DESIGNS: Record<string, Design> = {
  y_400mf: { depth: 16, w0: 48, wa: 27.89, wm: 2.09, groupWidth: 8, seRatio: 0.25 },
  y_800mf: { depth: 14, w0: 56, wa: 38.84, wm: 2.4, groupWidth: 16, seRatio: 0.25 },
  y_1_6gf: { depth: 27, w0: 48, wa: 20.71, wm: 2.65, groupWidth: 24, seRatio: 0.25 },
  y_3_2gf: { depth: 21, w0: 80, wa: 42.63, wm: 2.66, groupWidth: 24, seRatio: 0.25 },
  y_8gf: { depth: 17, w0: 192, wa: 76.82, wm: 2.19, groupWidth: 56, seRatio: 0.25 },
  y_16gf: { depth: 18, w0: 200, wa: 106.23, wm: 2.48, groupWidth: 112, seRatio: 0.25 },
  y_32gf: { depth: 20, w0: 232, wa: 115.89, wm: 2.53, groupWidth: 232, seRatio: 0.25 },
  x_400mf: { depth: 22, w0: 24, wa: 24.48, wm: 2.54, groupWidth: 16 },
  x_800mf: { depth: 16, w0: 56, wa: 35.73, wm: 2.28, groupWidth: 16 },
  x_1_6gf: { depth: 18, w0: 80, wa: 34.01, wm: 2.25, groupWidth: 24 },
  x_3_2gf: { depth: 25, w0: 88, wa: 26.31, wm: 2.25, groupWidth: 48 },
  x_8gf: { depth: 23, w0: 80, wa: 49.56, wm: 2.88, groupWidth: 120 },
  x_16gf: { depth: 22, w0: 216, wa: 55.59, wm: 2.1, groupWidth: 128 },
  x_32gf: { depth: 23, w0: 320, wa: 69.86, wm: 2.0, groupWidth: 168 },
};
/** The zoo names of the RegNets ('regnet_y_400mf', …, 'regnet_x_32gf'). */
export const REGNET_NAMES = Object.keys(DESIGNS).map((k) => `regnet_${k}`);

/** torchvision's RegNet: `stem` (3×3/2 conv to 32), `trunk_output` (stages `block1`… of `block{i}-{j}`), `avgpool`, `fc`. */
export class RegNet extends Module {
  readonly stem: Sequential;
  readonly trunk_output: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly fc: Linear;
  constructor(readonly design: string, o: ModelOptions = {}) {
    super();
    const d = DESIGNS[design];
    if (!d) throw invalidParameterError('design', Object.keys(DESIGNS).map((k) => `'${k}'`).join(', '), design);
    const { widths, depths, groupWidths } = regnetStages(d);
    this.stem = this.registerModule('stem', convNormActivation(o.inChannels ?? 3, 32, 3, { stride: 2, activation: new ReLU() }));
    const stages: Record<string, Module> = {};
    let width = 32;
    widths.forEach((w, i) => {
      const blocks: Record<string, Module> = {};
      for (let j = 0; j < depths[i]; j++) blocks[`block${i + 1}-${j}`] = new ResBottleneckBlock(j === 0 ? width : w, w, j === 0 ? 2 : 1, groupWidths[i], d.seRatio);
      stages[`block${i + 1}`] = new Sequential(blocks);
      width = w;
    });
    this.trunk_output = this.registerModule('trunk_output', new Sequential(stages));
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new Linear(width, o.numClasses ?? 1000));
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) {
        const [out, , kh, kw] = m.weight.shape;
        normal_(m.weight, 0, Math.sqrt(2 / (kh * kw * out)));
      } else if (m instanceof BatchNorm2d) {
        ones_(m.weight!);
        zeros_(m.bias!);
      } else if (m instanceof Linear) {
        normal_(m.weight, 0, 0.01);
        zeros_(m.bias!);
      }
    }
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.fc.call(this.avgpool.call(this.trunk_output.call(this.stem.call(x))).flatten(1)));
  }
  override toSpec(): ModuleSpec | null {
    const body = specsOf([this.stem, this.trunk_output, this.avgpool]), fc = this.fc.toSpec();
    return body && fc && { op: 'sequential', children: [...body, { op: 'flatten', start: 1, end: -1 }, fc] };
  }
}

/** A RegNet by its torchvision name without the prefix ('y_400mf', 'x_3_2gf', …). */
export function regnet(design: string, o: ModelOptions = {}): RegNet {
  return new RegNet(design, o);
}
