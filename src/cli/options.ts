/**
 * A command's options as data: one table per command serves both its yargs registration
 * (`withOptions`) and the recipe schema of its stage kind (src/recipe/schema.ts), so a recipe key is
 * spelled, typed and checked like the flag it stands for.
 */
import type { Argv, InferredOptionTypes, Options } from 'yargs';

/** One option of a command: the subset of yargs' `Options` that mclip uses. */
export interface CommandOption {
  type: 'string' | 'number' | 'boolean';
  /** the option takes several values (`--model A B`) */
  array?: boolean;
  default?: string | number | boolean;
  demandOption?: boolean;
  choices?: readonly string[];
  describe?: string;
}

/** A command's options, keyed by their kebab-case flag names (`stage-steps`). */
export type OptionTable = Readonly<Record<string, CommandOption>>;

/** The yargs form of one option. */
export function yargsOption(o: CommandOption): Options {
  const out: Options = { type: o.type };
  if (o.array) out.array = true;
  if (o.default !== undefined) out.default = o.default;
  if (o.demandOption) out.demandOption = true;
  if (o.choices) out.choices = [...o.choices];
  if (o.describe !== undefined) out.describe = o.describe;
  return out;
}

/** Registers every option of TABLE on a yargs builder, in the table's order; the result is typed as if each had been `.option(name, o)`. */
export function withOptions<T, O extends OptionTable>(a: Argv<T>, table: O): Argv<T & InferredOptionTypes<O>> {
  let y: Argv<T> = a;
  for (const [name, o] of Object.entries(table)) y = y.option(name, yargsOption(o)) as Argv<T>;
  // The loop added exactly TABLE's options, which is what the return type says.
  return y as Argv<T & InferredOptionTypes<O>>;
}
