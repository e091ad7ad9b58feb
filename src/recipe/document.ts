/**
 * A recipe file as read: the parsed YAML value and the line of every key, so that each error names the
 * file, the line and the key path (`recipes/x.yaml:12: stages[2].stage-steps: expected a number`).
 */
import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { MclipError } from '../errors.js';

/** A key path inside the recipe: map keys and list indices. */
export type KeyPath = readonly (string | number)[];

/** `stages[2].stage-steps` */
export function formatPath(path: KeyPath): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? p : `.${p}`;
  return s || '(top level)';
}

/** A mistake in a recipe: one line, `FILE:LINE: key.path: message`. */
export class RecipeError extends MclipError {
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly path: KeyPath,
    readonly detail: string,
  ) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${formatPath(path)}: ${detail}`);
    this.name = 'RecipeError';
  }
}

export class RecipeDocument {
  private constructor(
    readonly file: string,
    readonly text: string,
    readonly value: unknown,
    private readonly root: Node | null,
    private readonly lines: LineCounter,
  ) {}

  static read(file: string): RecipeDocument {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new MclipError(`${file}: cannot read the recipe (${e instanceof Error ? e.message : String(e)})`);
    }
    return RecipeDocument.parse(file, text);
  }

  static parse(file: string, text: string): RecipeDocument {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    const err = doc.errors[0];
    if (err) {
      const line = err.linePos?.[0]?.line ?? lines.linePos(err.pos[0]).line;
      throw new RecipeError(file, line, [], `not valid YAML: ${err.message.split('\n')[0]}`);
    }
    const root = doc.contents as Node | null;
    return new RecipeDocument(file, text, doc.toJS({ maxAliasCount: 100 }) as unknown, root, lines);
  }

  /** The line of the key at PATH (or of its nearest ancestor present in the file). */
  lineOf(path: KeyPath): number | undefined {
    let node: Node | null = this.root;
    let line = node?.range ? this.lines.linePos(node.range[0]).line : undefined;
    for (const p of path) {
      if (node && isMap(node)) {
        const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(p));
        if (!pair) break;
        const key = pair.key as Node;
        if (key.range) line = this.lines.linePos(key.range[0]).line;
        node = (pair.value as Node | null) ?? null;
      } else if (node && isSeq(node) && typeof p === 'number') {
        const item = node.items[p] as Node | undefined;
        if (!item) break;
        if (item.range) line = this.lines.linePos(item.range[0]).line;
        node = item;
      } else break;
    }
    return line;
  }

  error(path: KeyPath, detail: string): RecipeError {
    return new RecipeError(this.file, this.lineOf(path), path, detail);
  }
}
