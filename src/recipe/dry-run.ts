/**
 * `mclip run --dry-run`: the plan, stage by stage, with each model's size and MACs — exact where the
 * architecture is known before running (the recipe model, inherit, train from an arch, the attention
 * switch, token settings and fine-tunes keep their input's), expected where it is learnt (a distill stage:
 * its input's parameters less the target share of the pruned towers' prunable parameters; MACs follow
 * the learnt masks). Builds models with random weights; runs nothing and writes nothing.
 */
import * as tf from '../base/tf.js';
import { initBackend } from '../base/backend/index.js';
import { readCheckpointFile, configFromStateDict } from '../base/model/checkpoint.js';
import { CLIP } from '../base/model/clip.js';
import { getConfig, type ClipConfig } from '../base/model/configs.js';
import { modelCost } from '../eval/cost.js';
import { planInheritance } from '../distill/inherit.js';
import { jointPrunableSize } from '../distill/prune-stage.js';
import { inheritSpecFromArgs } from '../cli/commands/inherit.js';
import { commandLine, type Plan, type PlannedStage } from './plan.js';

interface Size {
  config: ClipConfig | null;
  params?: number;
  macs?: { image: number; text: number };
  /** how the figures were found */
  how: string;
}

function measure(cfg: ClipConfig, how: string): Size {
  const m = new CLIP(cfg, { seed: 0 });
  try {
    const c = modelCost(m);
    return { config: cfg, params: c.params.total, macs: c.macs, how };
  } finally {
    m.dispose();
  }
}

async function checkpointConfig(path: string, arch: string | undefined): Promise<ClipConfig> {
  if (arch) return getConfig(arch);
  const f = await readCheckpointFile(path);
  return configFromStateDict(f.config, f.sd, path);
}

const M = (n: number | undefined) => (n === undefined ? '?' : `${(n / 1e6).toFixed(3)} M`);
const G = (n: number | undefined) => (n === undefined ? '?' : `${(n / 1e9).toFixed(3)}`);

function sizeLine(s: Size): string {
  return `params ${M(s.params)}, GMACs image / text ${s.macs ? `${G(s.macs.image)} / ${G(s.macs.text)}` : 'known after the run'} (${s.how})`;
}

/** The plan as text. */
export async function describePlan(plan: Plan): Promise<string> {
  await initBackend({ quiet: true, gradients: false });
  const sizes = new Map<string, Size>();
  const lines: string[] = [];
  const rec = plan.recipe;
  lines.push(`recipe ${rec.name} (${rec.file}): ${plan.stages.length} stages, seed ${rec.seed}, run folder ${plan.root}`);
  if (plan.unresolved.length) lines.push(`  to set before running: ${plan.unresolved.map((v) => `\${${v}}`).join(', ')}`);
  const m = rec.model;
  let base: Size;
  if (m.checkpoint !== undefined && plan.baseline.path && !plan.unresolved.some((v) => m.checkpoint!.includes(`\${${v}}`))) base = measure(await checkpointConfig(plan.baseline.path, m.arch), 'the checkpoint');
  else if (m.arch) base = measure(getConfig(m.arch), `arch ${m.arch}`);
  else base = { config: null, how: 'no checkpoint or arch' };
  sizes.set('model', base);
  lines.push(`model ${m.name}: ${m.checkpoint ?? `(${m.arch})`} — ${sizeLine(base)}`);
  for (const st of plan.stages) {
    lines.push(`[${st.index + 1}] ${st.name} (${st.kind})${st.after.length ? ` after ${st.after.join(', ')}` : ''}`);
    if (st.argv) lines.push(`    ${commandLine(st.argv, plan.root)}`);
    if (st.kind === 'eval') lines.push(`    compares ${st.compare!.map((c) => c.name + (c.ref.tokens.length ? ` (${c.ref.tokens.join(' ')})` : '')).join(', ')}`);
    if (st.kind === 'tokens') lines.push(`    evaluation applies: ${st.model!.tokens.join(' ') || '(nothing: as trained)'}`);
    if (!st.model) continue;
    const size = sizeOf(st, sizes);
    sizes.set(st.name, size);
    lines.push(`    → ${sizeLine(size)}`);
  }
  return lines.join('\n');
}

function sizeOf(st: PlannedStage, sizes: Map<string, Size>): Size {
  const input = st.input ? sizes.get(st.input.stage) : undefined;
  const same = (how: string): Size => (input ? { ...input, how } : { config: null, how: 'unknown input' });
  switch (st.kind) {
    case 'train': {
      const arch = st.options.arch;
      if (typeof arch === 'string' && st.options.init === undefined) return measure(getConfig(arch), `arch ${arch}`);
      return same('as its init');
    }
    case 'inherit': {
      if (!input?.config) return { config: null, how: 'unknown teacher' };
      const o = st.options;
      const num = (k: string) => (typeof o[k] === 'number' ? (o[k] as number) : undefined);
      const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
      const spec = inheritSpecFromArgs({
        from: '', out: '',
        textLayers: num('text-layers'), textWidth: num('text-width'), textHeads: num('text-heads'), textFfn: num('text-ffn'),
        imageDepths: str('image-depths'), imageWidths: str('image-widths'), imageFfnRatio: num('image-ffn-ratio'), vitLayers: num('vit-layers'),
      });
      return measure(planInheritance(input.config, spec).config, 'the inherited architecture');
    }
    case 'distill': {
      if (!input?.config || input.params === undefined) return { config: null, how: 'unknown input' };
      const sp = typeof st.options.sparsity === 'string' ? st.options.sparsity.split(',').map(Number) : [];
      const s = sp[sp.length - 1];
      if (s === undefined || !(s > 0)) return same('plain distillation: as its input');
      const towers = st.options.towers === 'text' ? (['text'] as const) : st.options.towers === 'image' ? (['image'] as const) : (['text', 'image'] as const);
      const model = new CLIP(input.config, { seed: 0 });
      try {
        const prunable = jointPrunableSize(model, towers);
        return { config: null, params: Math.round(input.params - s * prunable), how: `expected at sparsity ${s} of ${towers.join('+')} (${M(prunable)} prunable)` };
      } finally {
        model.dispose();
        tf.disposeVariables();
      }
    }
    case 'tokens':
      return same('as its input; text MACs fall with the tokens kept');
    case 'attention':
      return same('as its input (the kernel changes, not the weights)');
    case 'finetune':
      return same('as its input');
    default:
      return same('as its input');
  }
}
