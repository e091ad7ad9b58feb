import type { HookHandle } from '../base/nn/module.js';

/** One handle for several hooks (and optional clean-up): `remove()` takes them all off, once. */
export function hookGroup(handles: readonly HookHandle[], cleanup: () => void = () => {}): HookHandle {
  let live = true;
  return {
    remove: () => {
      if (!live) return;
      live = false;
      for (const h of handles) h.remove();
      cleanup();
    },
  };
}
