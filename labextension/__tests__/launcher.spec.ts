/**
 * The launcher's compute server sections: JupyterLab's own launcher model and command
 * registry, kernel specs from a real `jupyter server` with the extension (see jupyterServer.ts).
 */
import { ILauncher, LauncherModel } from '@jupyterlab/launcher';
import { KernelSpecManager } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import {
  JSONExt,
  ReadonlyJSONObject,
  ReadonlyPartialJSONObject
} from '@lumino/coreutils';
import { DisposableSet } from '@lumino/disposable';

import {
  addLauncherCommands,
  CORE_COMMANDS,
  isCoreServerItem,
  LauncherCommandIDs,
  ServerLauncherSections
} from '../kernels/launcher';
import { JupyterServer, sleep } from './jupyterServer';
import { until } from './testing';

jest.setTimeout(30000);

const api = new JupyterServer();

beforeAll(() => api.start(), 90000);
afterAll(() => api.stop(), 90000);

describe('the launcher', () => {
  let specs: KernelSpecManager;
  let commands: CommandRegistry;
  let launcher: LauncherModel;
  let executed: [string, ReadonlyPartialJSONObject][];
  let coreItems: DisposableSet | null;
  let sections: ServerLauncherSections | null;
  let gpu: { id: number; name: string };

  /** What JupyterLab's notebook and console plugins add: one item per kernel spec. */
  function addCoreItems(): void {
    coreItems?.dispose();
    coreItems = new DisposableSet();
    for (const [name, spec] of Object.entries(specs.specs!.kernelspecs)) {
      for (const [category, command, args] of [
        ['Notebook', CORE_COMMANDS.notebook, { kernelName: name }],
        ['Console', CORE_COMMANDS.console, { kernelPreference: { name } }]
      ] as const) {
        coreItems.add(
          launcher.add({
            command,
            args: { isLauncher: true, ...args },
            category,
            kernelIconUrl: spec!.resources['logo-svg'],
            metadata: { kernel: JSONExt.deepCopy(spec!.metadata as any) }
          })
        );
      }
    }
  }

  /** The items the launcher shows, as "category: label". */
  function shown(): string[] {
    return Array.from(launcher.items())
      .map(
        item => `${item.category}: ${commands.label(item.command, item.args)}`
      )
      .sort();
  }

  beforeAll(async () => {
    await api.cleanup();
    gpu = await api.create('gpu-box');
  }, 60000);

  beforeEach(async () => {
    specs = new KernelSpecManager({ serverSettings: api.settings });
    await specs.ready;
    commands = new CommandRegistry();
    executed = [];
    for (const id of Object.values(CORE_COMMANDS)) {
      commands.addCommand(id, {
        label: args => `core ${id} ${JSON.stringify(args)}`,
        execute: args => {
          executed.push([id, args]);
        }
      });
    }
    addLauncherCommands(commands, specs);
    launcher = new LauncherModel();
    coreItems = null;
    sections = null;
  });

  afterEach(() => {
    sections?.dispose();
    coreItems?.dispose();
    specs.dispose();
  });

  it("gives each server a section with its kernels' notebook and console", () => {
    addCoreItems();
    sections = new ServerLauncherSections({ launcher, specs, commands });

    const section = 'Compute server: gpu-box';
    const ours = Array.from(launcher.items()).filter(
      i => i.category === section
    );
    expect(ours.map(i => [i.command, i.args, i.rank])).toEqual([
      [
        LauncherCommandIDs.newNotebook,
        { isLauncher: true, kernelName: `compute-${gpu.id}-python3` },
        0
      ],
      [
        LauncherCommandIDs.newConsole,
        { isLauncher: true, kernelName: `compute-${gpu.id}-python3` },
        1
      ]
    ]);
    // After JupyterLab's Notebook (0) and Console (20) sections, before Other (100).
    expect(ours.every(i => i.categoryRank === 50)).toBe(true);
    // JupyterLab's own items for the server's kernel are hidden; the local kernel's stay.
    expect(shown()).toEqual([
      `${section}: Python 3 (ipykernel) Console`,
      `${section}: Python 3 (ipykernel) Notebook`,
      `Console: core ${CORE_COMMANDS.console} {"isLauncher":true,"kernelPreference":{"name":"python3"}}`,
      `Notebook: core ${CORE_COMMANDS.notebook} {"isLauncher":true,"kernelName":"python3"}`
    ]);
  });

  it('labels, explains and draws the cards, and opens through JupyterLab', async () => {
    const args = { isLauncher: true, kernelName: `compute-${gpu.id}-python3` };
    const { newNotebook, newConsole } = LauncherCommandIDs;

    expect(commands.label(newNotebook, args)).toBe(
      'Python 3 (ipykernel) Notebook'
    );
    expect(commands.caption(newConsole, args)).toBe(
      'New console with Python 3 (ipykernel) on gpu-box. The compute server starts first if it is off.'
    );
    const icon = commands.icon(newNotebook, args) as LabIcon;
    expect(icon).toBeInstanceOf(LabIcon);
    expect(icon.svgstr).toContain('fill="#1f77b4"');
    expect(commands.isEnabled(newNotebook, args)).toBe(true);
    expect(commands.isEnabled(newNotebook, { kernelName: 'python3' })).toBe(
      false
    );

    await commands.execute(newNotebook, { ...args, cwd: 'work' });
    await commands.execute(newConsole, { ...args, cwd: 'work' });
    expect(executed).toEqual([
      [
        CORE_COMMANDS.notebook,
        { kernelName: `compute-${gpu.id}-python3`, cwd: 'work' }
      ],
      [
        CORE_COMMANDS.console,
        {
          kernelPreference: { name: `compute-${gpu.id}-python3` },
          cwd: 'work'
        }
      ]
    ]);
  });

  it('follows the kernel specs: a new server, a renamed one', async () => {
    sections = new ServerLauncherSections({ launcher, specs, commands });
    let changes = 0;
    launcher.stateChanged.connect(() => changes++);

    const other = await api.create('cpu-box');
    await specs.refreshSpecs();
    expect(changes).toBeGreaterThan(0);
    expect(shown()).toEqual([
      'Compute server: cpu-box: Python 3 (ipykernel) Console',
      'Compute server: cpu-box: Python 3 (ipykernel) Notebook',
      'Compute server: gpu-box: Python 3 (ipykernel) Console',
      'Compute server: gpu-box: Python 3 (ipykernel) Notebook'
    ]);

    await api.call('PATCH', `servers/${other.id}`, { name: 'cpu-2' }, 200);
    await specs.refreshSpecs();
    expect(shown()).toContain(
      'Compute server: cpu-2: Python 3 (ipykernel) Notebook'
    );
    expect(shown().join()).not.toContain('cpu-box');

    await api.call('DELETE', `servers/${other.id}`, undefined, 204);
    await specs.refreshSpecs();
    await until(() => !shown().join().includes('cpu-2'));
  });

  it('puts JupyterLab back as it was when grouping is turned off', async () => {
    addCoreItems();
    const original = launcher.items;
    sections = new ServerLauncherSections({ launcher, specs, commands });
    expect(launcher.items).not.toBe(original);

    sections.enabled = false;
    expect(launcher.items).toBe(original);
    expect(shown().filter(s => s.startsWith('Compute server'))).toEqual([]);
    expect(shown().filter(s => s.includes(`compute-${gpu.id}`))).toHaveLength(
      2
    );

    sections.enabled = true;
    expect(shown().filter(s => s.includes(`compute-${gpu.id}`))).toEqual([]);
    sections.dispose();
    expect(launcher.items).toBe(original);
    expect(shown()).toHaveLength(4);
    sections = null;
  });

  it('adds no card whose JupyterLab command is missing', async () => {
    commands = new CommandRegistry();
    addLauncherCommands(commands, specs);
    sections = new ServerLauncherSections({ launcher, specs, commands });
    expect(shown()).toEqual([]);

    // The notebook plugin activates later: its cards come then.
    commands.addCommand(CORE_COMMANDS.notebook, { execute: () => undefined });
    await sleep(0);
    expect(shown()).toEqual([
      'Compute server: gpu-box: Python 3 (ipykernel) Notebook'
    ]);
  });
});

describe('isCoreServerItem', () => {
  const item = (
    command: string,
    metadata?: ReadonlyJSONObject
  ): ILauncher.IItemOptions => ({ command, metadata });

  it("recognises JupyterLab's items for compute server kernels only", () => {
    const remote = { kernel: { compute_server: { id: 1, name: 'a' } } };
    expect(isCoreServerItem(item(CORE_COMMANDS.notebook, remote))).toBe(true);
    expect(isCoreServerItem(item(CORE_COMMANDS.console, remote))).toBe(true);
    expect(
      isCoreServerItem(
        item(CORE_COMMANDS.notebook, { kernel: { debugger: true } })
      )
    ).toBe(false);
    expect(isCoreServerItem(item(CORE_COMMANDS.notebook))).toBe(false);
    expect(isCoreServerItem(item(LauncherCommandIDs.newNotebook, remote))).toBe(
      false
    );
    expect(isCoreServerItem(item('terminal:create-new', remote))).toBe(false);
  });
});
