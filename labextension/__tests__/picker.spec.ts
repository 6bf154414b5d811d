/**
 * The kernel picker's groups: JupyterLab's own `SessionContextDialogs` (options and dialog)
 * with kernel specs from a real `jupyter server` with the extension (see jupyterServer.ts).
 */
import { ISessionContext, SessionContextDialogs } from '@jupyterlab/apputils';
import { KernelSpecManager } from '@jupyterlab/services';

import {
  groupKernelOptionsByServer,
  groupKernelPickerByServer,
  groupLabel
} from '../kernels/picker';
import { JupyterServer, sleep } from './jupyterServer';

jest.setTimeout(30000);

const api = new JupyterServer();
let specs: KernelSpecManager;
let gpu: { id: number };
let cpu: { id: number };

beforeAll(async () => {
  await api.start();
  gpu = await api.create('gpu-box');
  cpu = await api.create('cpu-box');
  specs = new KernelSpecManager({ serverSettings: api.settings });
  await specs.ready;
  await specs.refreshSpecs();
}, 90000);

afterAll(async () => {
  specs.dispose();
  await api.stop();
}, 90000);

/**
 * As much of a notebook's session context as the picker reads: no kernel yet, a language
 * preference (or none), no running kernels.
 */
function sessionContext(language: string | null): ISessionContext {
  return {
    isDisposed: false,
    name: 'Untitled.ipynb',
    path: 'Untitled.ipynb',
    session: null,
    hasNoKernel: true,
    kernelDisplayName: 'No Kernel',
    kernelPreference: language ? { language } : {},
    kernelManager: { running: () => [][Symbol.iterator]() },
    sessionManager: { running: () => [][Symbol.iterator]() },
    specsManager: specs
  } as unknown as ISessionContext;
}

/** The groups as "label: option, option". */
function summary(options: SessionContextDialogs.IKernelOptions): string[] {
  return options.groups.map(
    g => `${g.label}: ${g.options.map(o => o.text).join(', ')}`
  );
}

describe('groupKernelOptionsByServer', () => {
  it("moves each server's kernels into a group of its own, after the local ones", () => {
    const options = SessionContextDialogs.kernelOptions(
      sessionContext('python')
    );
    // JupyterLab lists them all together.
    expect(summary(options)).toEqual([
      'Start python Kernel: Python 3 (ipykernel), Python 3 (ipykernel) on cpu-box, Python 3 (ipykernel) on gpu-box',
      'Use No Kernel: No Kernel',
      'Start Kernel: '
    ]);

    const grouped = groupKernelOptionsByServer(options, specs.specs);

    expect(summary(grouped)).toEqual([
      'Start python Kernel: Python 3 (ipykernel)',
      `${groupLabel({ name: 'cpu-box' })}: Python 3 (ipykernel) on cpu-box`,
      'Start on compute server gpu-box: Python 3 (ipykernel) on gpu-box',
      'Use No Kernel: No Kernel',
      'Start Kernel: '
    ]);
    // The values still start the same kernel specs.
    expect(grouped.groups[1].options[0].value).toBe(
      JSON.stringify({ name: `compute-${cpu.id}-python3` })
    );
    // The original is left alone.
    expect(options.groups[0].options).toHaveLength(3);
  });

  it('groups the same way without a language preference', () => {
    const grouped = groupKernelOptionsByServer(
      SessionContextDialogs.kernelOptions(sessionContext(null)),
      specs.specs
    );

    expect(summary(grouped)).toEqual([
      'Start Kernel: Python 3 (ipykernel)',
      'Start on compute server cpu-box: Python 3 (ipykernel) on cpu-box',
      'Start on compute server gpu-box: Python 3 (ipykernel) on gpu-box',
      'Use No Kernel: No Kernel',
      'Connect to Existing Kernel: '
    ]);
  });

  it('keeps the selection, and drops the groups it empties', () => {
    const value = JSON.stringify({ name: `compute-${gpu.id}-python3` });
    const options: SessionContextDialogs.IKernelOptions = {
      groups: [
        {
          label: 'Start R Kernel',
          options: [{ text: 'R on gpu-box', value, selected: true }]
        },
        {
          label: 'Connect to Existing Kernel',
          options: [{ text: 'a.ipynb', value: JSON.stringify({ id: 'k1' }) }]
        }
      ]
    };

    expect(groupKernelOptionsByServer(options, specs.specs).groups).toEqual([
      {
        label: 'Start on compute server gpu-box',
        options: [{ text: 'R on gpu-box', value, selected: true }]
      },
      options.groups[1]
    ]);
  });

  it('changes nothing without compute server kernels', () => {
    const options = SessionContextDialogs.kernelOptions(
      sessionContext('python')
    );
    expect(groupKernelOptionsByServer(options, null)).toBe(options);
  });
});

describe('groupKernelPickerByServer', () => {
  afterEach(async () => {
    for (const node of Array.from(
      document.querySelectorAll<HTMLElement>('.jp-Dialog')
    )) {
      node.querySelector<HTMLButtonElement>('.jp-mod-reject')?.click();
    }
    await sleep(20);
  });

  it("groups JupyterLab's Select Kernel dialog until disposed", async () => {
    const original = SessionContextDialogs.kernelOptions;
    const grouping = groupKernelPickerByServer();
    expect(SessionContextDialogs.kernelOptions).not.toBe(original);

    const done = new SessionContextDialogs().selectKernel(
      sessionContext('python')
    );
    let dialog: HTMLElement | null = null;
    for (let i = 0; i < 300 && !dialog?.querySelector('select'); i++) {
      dialog = document.querySelector<HTMLElement>('.jp-Dialog');
      await sleep(10);
    }
    const labels = Array.from(
      dialog!.querySelectorAll<HTMLOptGroupElement>('optgroup')
    ).map(g => g.label);
    expect(labels).toEqual([
      'Start python Kernel',
      'Start on compute server cpu-box',
      'Start on compute server gpu-box',
      'Use No Kernel',
      'Start Kernel'
    ]);
    dialog!.querySelector<HTMLButtonElement>('.jp-mod-reject')!.click();
    await done;

    grouping.dispose();
    expect(grouping.isDisposed).toBe(true);
    expect(SessionContextDialogs.kernelOptions).toBe(original);
    expect(
      SessionContextDialogs.kernelOptions(sessionContext('python')).groups[0]
        .options
    ).toHaveLength(3);
  });

  it('leaves a later wrapper in place when disposed', () => {
    const original = SessionContextDialogs.kernelOptions;
    const grouping = groupKernelPickerByServer();
    const namespace = SessionContextDialogs as any;
    const ours = namespace.kernelOptions;
    const later = (...args: any[]) => ours(...args);
    namespace.kernelOptions = later;

    grouping.dispose();

    expect(namespace.kernelOptions).toBe(later);
    namespace.kernelOptions = original;
  });
});
