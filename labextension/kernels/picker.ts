import { ISessionContext, SessionContextDialogs } from '@jupyterlab/apputils';
import { KernelSpec } from '@jupyterlab/services';
import { ITranslator } from '@jupyterlab/translation';
import { IDisposable } from '@lumino/disposable';

import { specServer } from './specs';
import { ISpecServer } from './types';

type KernelOptions = SessionContextDialogs.IKernelOptions;
type Group = KernelOptions['groups'][number];

/** The label of the kernel picker's group of a compute server's kernels. */
export function groupLabel(server: { name: string }): string {
  return `Start on compute server ${server.name}`;
}

/** The kernel spec an option starts (`{"name": ...}`), or null for a running kernel or none. */
function optionSpecName(value: string): string | null {
  try {
    const choice = JSON.parse(value);
    return choice &&
      typeof choice === 'object' &&
      typeof choice.name === 'string'
      ? choice.name
      : null;
  } catch {
    return null;
  }
}

/**
 * The kernel picker's options with the compute servers' kernel specs moved out of JupyterLab's
 * "Start … Kernel" groups into one group per server ("Start on compute server gpu-box"), placed
 * after the groups of local kernel specs and before the running kernels. Groups left empty are
 * dropped; which option is selected does not change.
 */
export function groupKernelOptionsByServer(
  options: KernelOptions,
  specs: KernelSpec.ISpecModels | null | undefined
): KernelOptions {
  const byServer = new Map<number, { server: ISpecServer; group: Group }>();
  const groups: Group[] = [];
  // Where the servers' groups go: after the last group that held a kernel spec.
  let insertAt = -1;
  for (const group of options.groups) {
    const kept: Group['options'] = [];
    let hadSpec = false;
    for (const option of group.options) {
      const name = optionSpecName(option.value);
      const server = name ? specServer(specs?.kernelspecs[name]) : null;
      hadSpec = hadSpec || name !== null;
      if (!server) {
        kept.push(option);
        continue;
      }
      let entry = byServer.get(server.id);
      if (!entry) {
        entry = { server, group: { label: groupLabel(server), options: [] } };
        byServer.set(server.id, entry);
      }
      entry.group.options.push(option);
    }
    if (kept.length > 0 || group.options.length === 0) {
      groups.push({ ...group, options: kept });
    }
    if (hadSpec) {
      insertAt = groups.length;
    }
  }
  if (byServer.size === 0) {
    return options;
  }
  const serverGroups = [...byServer.values()]
    .sort((a, b) => a.server.name.localeCompare(b.server.name))
    .map(entry => entry.group);
  groups.splice(insertAt < 0 ? groups.length : insertAt, 0, ...serverGroups);
  return { ...options, groups };
}

type KernelOptionsFunction = (
  sessionContext: ISessionContext,
  translator?: ITranslator | null
) => KernelOptions;

/**
 * Group the kernel picker's compute server kernels by server (see `groupKernelOptionsByServer`).
 *
 * JupyterLab's "Select Kernel" dialog builds its `<select>` from
 * `SessionContextDialogs.kernelOptions` and offers no other way in short of replacing the
 * session dialogs plugin, so this wraps that function (JupyterLab's shared
 * `@jupyterlab/apputils`) for as long as the returned disposable lives.
 */
export function groupKernelPickerByServer(): IDisposable {
  const namespace = SessionContextDialogs as unknown as {
    kernelOptions: KernelOptionsFunction;
  };
  const original = namespace.kernelOptions;
  const grouped: KernelOptionsFunction = (sessionContext, translator) =>
    groupKernelOptionsByServer(
      original(sessionContext, translator),
      sessionContext.specsManager.specs
    );
  namespace.kernelOptions = grouped;
  let isDisposed = false;
  return {
    get isDisposed() {
      return isDisposed;
    },
    dispose() {
      if (isDisposed) {
        return;
      }
      isDisposed = true;
      // Put the original back only if nobody wrapped ours since.
      if (namespace.kernelOptions === grouped) {
        namespace.kernelOptions = original;
      }
    }
  };
}
