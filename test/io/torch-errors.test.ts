import { mkdtempSync, openSync, readSync, closeSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync, unzipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import { unpickleTorch } from '../../src/base/io/pickle.js';
import { MclipError } from '../../src/errors.js';
import { fixture, describeFixtures } from '../paths.js';
import { f32Bytes, PickleWriter, stateDictPickle, torchZip, writeTensor } from './pickle-builder.js';

const tmp = mkdtempSync(join(tmpdir(), 'mclip-io-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs `fn`, expects a one-line MclipError, returns its message. */
async function errorOf(fn: () => Promise<unknown> | unknown): Promise<string> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(MclipError);
  const msg = (err as Error).message;
  expect(msg).not.toContain('\n');
  return msg;
}

function headOf(path: string, n: number): Uint8Array {
  const buf = new Uint8Array(n);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, n, 0);
  } finally {
    closeSync(fd);
  }
  return buf;
}

const simple = () =>
  stateDictPickle([{ name: 'w', storage: 'FloatStorage', key: '0', numel: 2, shape: [2] }]);

describeFixtures('damaged fixture copies', () => {
  const src = fixture('text_tower_fp32', 'text_mct_d64_fp32.pt');

  it.each([10, 1000, 400_000, 810_900])('truncated to %i bytes', async (n) => {
    const p = join(tmp, `trunc-${n}.pt`);
    writeFileSync(p, headOf(src, n));
    const msg = await errorOf(() => loadTorchCheckpoint(p));
    expect(msg).toBe(`${p}: not a valid PyTorch checkpoint (zip central directory not found: truncated?)`);
  });

  it('corrupted bytes inside data.pkl are caught by the CRC', async () => {
    const bytes = headOf(src, 810956);
    // data.pkl is the first entry: its data starts right after the first local header
    const dv = new DataView(bytes.buffer);
    const dataStart = 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
    bytes[dataStart + 100] ^= 0x5a;
    bytes[dataStart + 101] ^= 0xff;
    const p = join(tmp, 'corrupt.pt');
    writeFileSync(p, bytes);
    const msg = await errorOf(() => loadTorchCheckpoint(p));
    expect(msg).toMatch(/corrupt\.pt: zip entry 'text_mct_d64_fp32\/data\.pkl' is corrupted \(CRC-32 expected [0-9a-f]{8}, got [0-9a-f]{8}\)/);
  });

  it('corrupted storage bytes are caught with verifyChecksums', async () => {
    const files = unzipSync(headOf(src, 810956));
    files['text_mct_d64_fp32/data/3'][0] ^= 1;
    // rebuild a zip whose central directory keeps the ORIGINAL crc: patch after zipping
    const good = zipSync(unzipSync(headOf(src, 810956)), { level: 0 });
    const bad = zipSync(files, { level: 0 });
    // copy the good central directory + EOCD over the bad archive (same layout, different data)
    const cdAt = new DataView(good.buffer).getUint32(good.length - 6, true);
    bad.set(good.subarray(cdAt), cdAt);
    const p = join(tmp, 'corrupt-storage.pt');
    writeFileSync(p, bad);
    await expect(loadTorchCheckpoint(p)).resolves.toBeInstanceOf(Map);
    const msg = await errorOf(() => loadTorchCheckpoint(p, { verifyChecksums: true }));
    expect(msg).toContain("zip entry 'text_mct_d64_fp32/data/3' is corrupted (CRC-32");
  });
});

describe('refused checkpoints', () => {
  it('missing file', async () => {
    const msg = await errorOf(() => loadTorchCheckpoint(join(tmp, 'nope.pt')));
    expect(msg).toContain('nope.pt: cannot open file (ENOENT)');
  });

  it('legacy non-zip pickle', async () => {
    const msg = await errorOf(() => loadTorchCheckpoint(simple(), { name: 'old.pt' }));
    expect(msg).toMatch(/^old\.pt: legacy \(non-zip\) PyTorch checkpoint format is not supported/);
  });

  it('not a checkpoint at all', async () => {
    const msg = await errorOf(() => loadTorchCheckpoint(new TextEncoder().encode('hello world'), { name: 'x.pt' }));
    expect(msg).toBe('x.pt: not a valid PyTorch checkpoint (no zip signature at the start of the file)');
  });

  it('zip without data.pkl', async () => {
    const msg = await errorOf(() => loadTorchCheckpoint(zipSync({ 'a/b.txt': new Uint8Array(3) }, { level: 0 })));
    expect(msg).toContain("expected exactly one '<folder>/data.pkl' in the zip, found 0");
  });

  it("GLOBAL 'os' 'system' + REDUCE is refused without running anything", async () => {
    const w = new PickleWriter().proto(2).global('os', 'system').str('touch /tmp/pwned').op(0x85).reduce().stop();
    const msg = await errorOf(() => loadTorchCheckpoint(torchZip('archive', w.build(), {}), { name: 'evil.pt' }));
    expect(msg).toBe(
      "evil.pt:archive/data.pkl (byte 2): pickle opcode 'c' (GLOBAL) refers to global 'os.system', which is not " +
        'allowed (only PyTorch state dicts saved with torch.save(model.state_dict()) can be loaded)',
    );
  });

  it('STACK_GLOBAL of builtins.eval is refused', async () => {
    const w = new PickleWriter().proto(4).stackGlobal('builtins', 'eval').stop();
    const msg = await errorOf(() => unpickleTorch(w.build(), 'x.pkl'));
    expect(msg).toContain("pickle opcode '\\x93' (STACK_GLOBAL) refers to global 'builtins.eval', which is not allowed");
  });

  it('REDUCE on an allowed but non-callable global is refused', async () => {
    const w = new PickleWriter().proto(2).global('torch', 'FloatStorage').emptyTuple().reduce().stop();
    const msg = await errorOf(() => unpickleTorch(w.build(), 'x.pkl'));
    expect(msg).toBe("x.pkl (byte 23): pickle opcode 'R' (REDUCE) on global 'torch.FloatStorage' is not allowed");
  });

  it('REDUCE on a non-global is refused', async () => {
    const w = new PickleWriter().proto(2).str('abc').emptyTuple().reduce().stop();
    expect(await errorOf(() => unpickleTorch(w.build(), 'x.pkl'))).toBe(
      "x.pkl (byte 11): pickle opcode 'R' (REDUCE) on a str is not allowed",
    );
  });

  it.each([
    ['INST', [0x69, ...new TextEncoder().encode('os\nsystem\n')], "'i' (INST)", 2],
    ['EXT1', [0x82, 0x01], "'\\x82' (EXT1)", 2],
    ['OBJ', [0x28, 0x6f], "'o' (OBJ)", 3],
    ['NEWOBJ', [0x81], "'\\x81' (NEWOBJ)", 2],
    ['PERSID', [0x50, 0x30, 0x0a], "'P' (PERSID)", 2],
  ] as const)('disallowed opcode %s', async (_n, bytes, named, at) => {
    const pkl = new PickleWriter().proto(2).raw(...bytes).stop().build();
    const msg = await errorOf(() => loadTorchCheckpoint(torchZip('archive', pkl, {}), { name: 'evil.pt' }));
    expect(msg).toBe(
      `evil.pt:archive/data.pkl (byte ${at}): pickle opcode ${named} is not allowed (not needed for a PyTorch state dict)`,
    );
  });

  it('BUILD on a tensor (attribute injection) is refused', async () => {
    const w = new PickleWriter().proto(2);
    writeTensor(w, { name: 't', storage: 'FloatStorage', key: '0', numel: 1, shape: [1] });
    w.op(0x7d).op(0x62).stop();
    const msg = await errorOf(() => unpickleTorch(w.build(), 'x.pkl'));
    expect(msg).toMatch(/^x\.pkl \(byte \d+\): pickle opcode 'b' \(BUILD\) on a tensor with a dict state is not allowed$/);
  });

  it('garbage and truncated pickles are corrupt, not crashes', async () => {
    const garbage = Uint8Array.from([0x80, 0x02, 0xff, 0x00]);
    expect(await errorOf(() => unpickleTorch(garbage, 'g.pkl'))).toBe(
      'g.pkl (byte 2): invalid pickle opcode 0xff (corrupted pickle?)',
    );
    const full = simple();
    for (const cut of [1, 5, 40, full.length - 1]) {
      const msg = await errorOf(() => unpickleTorch(full.subarray(0, cut), 'c.pkl'));
      expect(msg).toMatch(/^c\.pkl \(byte \d+\): .*\(corrupted pickle\?\)$/);
    }
    const underflow = new PickleWriter().proto(2).op(0x73).stop().build();
    expect(await errorOf(() => unpickleTorch(underflow, 'u.pkl'))).toContain('pickle stack underflow');
    const badUtf8 = new PickleWriter().proto(2).op(0x8c, 2, 0xc3, 0x28).stop().build();
    expect(await errorOf(() => unpickleTorch(badUtf8, 'u.pkl'))).toContain('invalid UTF-8');
  });

  it('storage problems name the tensor', async () => {
    const pkl = simple();
    const missing = await errorOf(() => loadTorchCheckpoint(torchZip('a', pkl, {}), { name: 'm.pt' }));
    expect(missing).toBe("m.pt: tensor 'w': storage entry 'a/data/0' is missing from the zip");
    const short = await errorOf(() => loadTorchCheckpoint(torchZip('a', pkl, { '0': f32Bytes([1]) }), { name: 'm.pt' }));
    expect(short).toBe("m.pt: tensor 'w': storage 'a/data/0' has 4 bytes, expected 8 (2 x float32)");
    const oob = stateDictPickle([{ name: 'w', storage: 'FloatStorage', key: '0', numel: 2, offset: 1, shape: [2] }]);
    const msg = await errorOf(() => loadTorchCheckpoint(torchZip('a', oob, { '0': f32Bytes([1, 2]) }), { name: 'm.pt' }));
    expect(msg).toBe("m.pt: tensor 'w' (shape [2], stride [1], offset 1) reads element 2 beyond its storage of 2 elements");
  });

  it('non-tensor entries and non-dict checkpoints are refused', async () => {
    const w = new PickleWriter().proto(2).op(0x7d).mark().str('epoch').int(3).str('opt').op(0x7d).op(0x75).stop();
    const msg = await errorOf(() => loadTorchCheckpoint(torchZip('a', w.build(), {}), { name: 't.pt' }));
    expect(msg).toBe(
      "t.pt: checkpoint is a dict but not a state dict (keys: epoch, opt; entry 'epoch' is an int); " +
        "expected tensors, or a 'state_dict'/'model' entry holding them",
    );
    const list = new PickleWriter().proto(2).op(0x5d).stop().build();
    expect(await errorOf(() => loadTorchCheckpoint(torchZip('a', list, {}), { name: 't.pt' }))).toBe(
      't.pt: checkpoint holds a list, expected a state dict (a dict of tensors)',
    );
  });

  it('a pickled nn.Module (torch.save(model)) is refused at its class global', async () => {
    const w = new PickleWriter().proto(2).global('mobileclip.clip', 'CLIP').stop();
    const msg = await errorOf(() => loadTorchCheckpoint(torchZip('a', w.build(), {}), { name: 'm.pt' }));
    expect(msg).toContain("refers to global 'mobileclip.clip.CLIP', which is not allowed");
    expect(msg).toContain('torch.save(model.state_dict())');
  });
});
