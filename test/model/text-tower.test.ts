import { beforeAll, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import { toFloat32 } from '../../src/base/io/tensor-data.js';
import { TextTransformer } from '../../src/base/model/text-transformer.js';
import { fromOfficialJson } from '../../src/base/model/configs.js';
import { exportStateDict, loadStateDict } from '../../src/base/model/state-dict.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { withCapture } from '../../src/base/nn/module.js';
import { fixture, describeFixtures } from '../paths.js';
import { readFixture, readJson, relErr, tokensTensor } from './helpers.js';

const TOL = 1e-4;

describeFixtures('float32 text towers (mct and causal base)', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  });

  for (const name of ['text_mct_d64', 'text_base_causal_d64']) {
    test(`${name}: loads strictly, matches every activation, fused and unfused`, async () => {
      const c = readJson<{ text_cfg: Record<string, unknown>; projection_dim: number }>('text_tower_fp32', `${name}_config.json`);
      const cfg = fromOfficialJson({ embed_dim: c.projection_dim, image_cfg: { model_name: 'mci0' }, text_cfg: c.text_cfg });
      expect(cfg.text.causalMasking).toBe(name.includes('causal'));
      const tower = new TextTransformer(cfg.text, c.projection_dim);
      const sd = await loadTorchCheckpoint(fixture('text_tower_fp32', `${name}_fp32.pt`));
      expect([...sd.values()].some((t) => t.dtype === 'float32')).toBe(true);
      loadStateDict(tower, sd, `${name}_fp32.pt`);
      tower.eval();
      const io = readFixture('text_tower_fp32', `${name}_io.safetensors`);
      const tokens = tokensTensor(io);
      const names = [...io.keys()].filter((k) => k.startsWith('text.') && !['text.embed', 'text.pooled'].includes(k));
      const { result, captured } = withCapture(tower, names.map((n) => n.slice(5)), () => tower.call(tokens));
      for (const n of names) expect(relErr(toFloat32(io.get(n)!), captured.get(n.slice(5))!.dataSync()), n).toBeLessThanOrEqual(TOL);
      const pooled = tower.pool(captured.get('final_layer_norm')!, tokens);
      expect(relErr(toFloat32(io.get('text.pooled')!), pooled.dataSync())).toBeLessThanOrEqual(TOL);
      expect(relErr(toFloat32(io.get('text.embed')!), result.dataSync())).toBeLessThanOrEqual(TOL);

      reparameterize(tower);
      const fusedKeys = readJson<Array<{ name: string; shape: number[] }>>('text_tower_fp32', `${name}_fused_state_dict_keys.json`);
      const fsd = exportStateDict(tower);
      expect([...fsd.keys()].sort()).toEqual(fusedKeys.map((k) => k.name).sort());
      const fused = tower.call(tokens);
      expect(relErr(toFloat32(io.get('fused.text.embed')!), fused.dataSync())).toBeLessThanOrEqual(TOL);
      expect(relErr(result.dataSync(), fused.dataSync())).toBeLessThanOrEqual(TOL);
      tf.dispose([tokens, pooled, result, fused, ...captured.values()]);
      tower.dispose();
    });
  }
});
