/**
 * File sync in the sidebar: the model against a real server and a running local compute
 * server (events from Jupyter's own event socket), the live updates, the Sync button and its
 * menu, the progress and summary view, and the sync settings dialog.
 */
import { Event, EventManager } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';
import * as fs from 'fs';
import * as path from 'path';
import * as React from 'react';
import { act } from 'react';

import { ServerEvents } from '../events/service';
import { ServersModel } from '../servers/model';
import { ComputeServersSidebar } from '../sidebar';
import { StatusModel } from '../status';
import {
  formatDuration,
  formatSize,
  isNoop,
  progressFraction,
  progressLine,
  runHeadline,
  summaryCounts
} from '../sync/format';
import { SyncLiveUpdates } from '../sync/live';
import { SyncSection } from '../sync/section';
import { mergeSyncs, newerRun, runFromEvent, SyncModel } from '../sync/model';
import {
  buildSyncUpdate,
  DEFAULT_SYNC_SETTINGS,
  parseLines,
  syncErrorKeyFor,
  SyncSettingsBody,
  syncFormValues
} from '../sync/settingsDialog';
import { ISyncRun, ISyncSummary } from '../sync/types';
import { ServerSync, SyncButton } from '../sync/view';
import { IServerSyncs } from '../tokens';
import { JupyterServer, sleep } from './jupyterServer';
import {
  FakeEvents,
  mountReactPerTest,
  renderOutsideAct,
  until
} from './testing';

const EMPTY_SUMMARY: ISyncSummary = {
  sent: { files: 0, bytes: 0 },
  received: { files: 0, bytes: 0 },
  deleted: { local: 0, remote: 0 },
  chmod: { local: 0, remote: 0 },
  conflicts: [],
  skipped: [],
  errors: [],
  changes: [],
  pending: 0,
  truncated: false
};

function makeRun(overrides: Partial<ISyncRun> = {}): ISyncRun {
  return {
    id: 1,
    server_id: 1,
    direction: 'both',
    path: '',
    trigger: 'api',
    state: 'completed',
    started: 1700000000,
    finished: 1700000001,
    error: null,
    progress: {
      phase: 'done',
      files_total: 0,
      files_done: 0,
      bytes_total: 0,
      bytes_done: 0,
      rate: 0,
      eta_seconds: null,
      elapsed: 1
    },
    summary: EMPTY_SUMMARY,
    ...overrides
  };
}

function entryOf(runs: ISyncRun[]) {
  const value: IServerSyncs = {
    runs,
    running: runs.find(r => r.state === 'running')?.id ?? null,
    defaultExcludes: []
  };
  return { value, loaded: true, error: null, at: 0 };
}

describe('sync wording', () => {
  it('says sizes, rates and times left in a few characters', () => {
    expect(formatSize(8)).toBe('8 B');
    expect(formatSize(1536)).toBe('1.5 KB');
    expect(formatSize(12 * 2 ** 20)).toBe('12 MB');
    expect(formatSize(1.25 * 2 ** 30)).toBe('1.3 GB');
    expect(formatDuration(4)).toBe('4 s');
    expect(formatDuration(125)).toBe('2 min 5 s');
    expect(formatDuration(3780)).toBe('1 h 3 min');
  });

  it('says how far a transfer is: files, bytes, rate, time left', () => {
    const progress = {
      phase: 'transferring' as const,
      files_total: 10,
      files_done: 3,
      bytes_total: 5 * 2 ** 20,
      bytes_done: 1.2 * 2 ** 20,
      rate: 2.1 * 2 ** 20,
      eta_seconds: 4,
      elapsed: 2
    };
    expect(progressLine(progress)).toBe(
      '3 of 10 files · 1.2 MB of 5 MB · 2.1 MB/s · 4 s left'
    );
    expect(progressFraction(progress)).toBeCloseTo(0.24);
    expect(progressLine({ ...progress, phase: 'scanning' })).toBe(
      'Looking for changes on both sides…'
    );
    expect(progressFraction({ ...progress, phase: 'scanning' })).toBeNull();
    expect(progressLine(null)).toBe('Starting…');
  });

  it('counts what a sync did, and says when nothing changed', () => {
    const summary: ISyncSummary = {
      ...EMPTY_SUMMARY,
      sent: { files: 1, bytes: 6 },
      deleted: { local: 1, remote: 2 },
      conflicts: [
        { path: 'a.txt', conflict_path: 'a (c).txt', resolved: true }
      ],
      errors: [{ path: 'b', message: 'Permission denied' }]
    };
    expect(summaryCounts(summary).join(' · ')).toBe(
      '1 sent · 0 received · 3 deleted · 1 conflict · 0 skipped · 1 error'
    );
    expect(isNoop(summary)).toBe(false);
    expect(isNoop(EMPTY_SUMMARY)).toBe(true);
  });

  it('heads a sync with who started it, what it did and when', () => {
    const finished = new Date(2030, 0, 1, 14, 32).getTime() / 1000;
    expect(runHeadline(makeRun({ finished }))).toBe('Synced at 14:32');
    expect(
      runHeadline(
        makeRun({
          finished,
          direction: 'push',
          trigger: 'kernel',
          path: 'work'
        })
      )
    ).toBe('Before a kernel start: pushed work at 14:32');
    expect(runHeadline(makeRun({ finished, trigger: 'auto' }))).toBe(
      'Auto-sync: synced at 14:32'
    );
    expect(runHeadline(makeRun({ finished, state: 'failed' }))).toBe(
      'Sync failed at 14:32'
    );
    expect(
      runHeadline(
        makeRun({ state: 'running', finished: null, direction: 'pull' })
      )
    ).toBe('Pulling…');
  });
});

describe('merging what is read and heard of syncs', () => {
  it('never takes a sync back: an ended one stays ended, a running one moves on', () => {
    const running = makeRun({
      state: 'running',
      finished: null,
      summary: null,
      progress: { ...makeRun().progress!, phase: 'transferring', elapsed: 2 }
    });
    const earlier = {
      ...running,
      progress: { ...running.progress!, elapsed: 1 }
    };
    const ended = makeRun();
    expect(newerRun(running, earlier)).toBe(running);
    expect(newerRun(earlier, running)).toBe(running);
    expect(newerRun(ended, running)).toBe(ended);
    expect(newerRun(running, ended)).toBe(ended);
    // An end heard from an event (no summary) gives way to the one read.
    const heard = { ...ended, summary: null, heard: true };
    expect(newerRun(heard, ended)).toBe(ended);
  });

  it('keeps the newest first, and which one runs', () => {
    const known: IServerSyncs = {
      runs: [makeRun({ id: 1 })],
      running: null,
      defaultExcludes: ['.git/']
    };
    const merged = mergeSyncs(known, {
      runs: [makeRun({ id: 2, state: 'running', finished: null })],
      running: 2,
      defaultExcludes: []
    });
    expect(merged.runs.map(r => r.id)).toEqual([2, 1]);
    expect(merged.running).toBe(2);
    expect(merged.defaultExcludes).toEqual(['.git/']);
  });

  it('builds a running sync from its event, and its end', () => {
    const run = runFromEvent(
      3,
      {
        id: 7,
        state: 'running',
        direction: 'push',
        path: 'work',
        trigger: 'kernel',
        phase: 'transferring',
        files_total: 2,
        files_done: 1,
        bytes_total: 10,
        bytes_done: 5,
        rate: 5,
        eta_seconds: 1,
        elapsed: 1
      },
      undefined,
      1000
    );
    expect(run).toMatchObject({
      id: 7,
      server_id: 3,
      direction: 'push',
      path: 'work',
      trigger: 'kernel',
      state: 'running',
      started: 999,
      finished: null,
      summary: null
    });
    expect(run.progress?.bytes_done).toBe(5);
    const end = runFromEvent(3, { id: 7, state: 'completed' }, run, 1002);
    expect(end.finished).toBe(1002);
    expect(end.progress).toEqual(run.progress);
  });
});

describe('SyncButton', () => {
  const mount = mountReactPerTest();

  function menuItems(): HTMLButtonElement[] {
    return Array.from(
      mount.container.querySelectorAll<HTMLButtonElement>(
        '.jp-ComputeServers-syncMenuItem'
      )
    );
  }

  it('syncs both ways, or as the menu says; the menu also opens the settings', () => {
    const chosen: string[] = [];
    mount.render(
      <SyncButton
        serverName="box"
        running={true}
        onSync={direction => chosen.push(direction)}
        onSettings={() => chosen.push('settings')}
      />
    );
    const main = mount.container.querySelector<HTMLButtonElement>(
      '.jp-ComputeServers-syncButton'
    )!;
    act(() => main.click());
    expect(chosen).toEqual(['both']);
    expect(menuItems()).toHaveLength(0);

    const caret = mount.container.querySelector<HTMLButtonElement>(
      '.jp-ComputeServers-syncMenuButton'
    )!;
    act(() => caret.click());
    expect(caret.getAttribute('aria-expanded')).toBe('true');
    expect(menuItems().map(b => b.textContent)).toEqual([
      'Sync both ways',
      'Push to the server',
      'Pull from the server',
      'Sync settings…'
    ]);
    act(() => menuItems()[2].click());
    expect(chosen).toEqual(['both', 'pull']);
    expect(menuItems()).toHaveLength(0);

    act(() => caret.click());
    act(() => menuItems()[3].click());
    expect(chosen).toEqual(['both', 'pull', 'settings']);

    // Escape and a click elsewhere close it.
    act(() => caret.click());
    act(() => {
      document.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape' }));
    });
    expect(menuItems()).toHaveLength(0);
    act(() => caret.click());
    act(() => {
      document.body.dispatchEvent(
        new MouseEvent('mousedown', { bubbles: true })
      );
    });
    expect(menuItems()).toHaveLength(0);
  });

  it('offers only the settings while the server is not running, and says why', () => {
    mount.render(
      <SyncButton
        serverName="box"
        running={false}
        onSync={() => undefined}
        onSettings={() => undefined}
      />
    );
    const main = mount.container.querySelector<HTMLButtonElement>(
      '.jp-ComputeServers-syncButton'
    )!;
    expect(main.disabled).toBe(true);
    expect(main.title).toBe('Start box to sync its files');
    act(() =>
      mount.container
        .querySelector<HTMLButtonElement>('.jp-ComputeServers-syncMenuButton')!
        .click()
    );
    expect(menuItems().map(b => b.disabled)).toEqual([true, true, true, false]);
  });

  it('does not start a second sync while one runs', () => {
    mount.render(
      <SyncButton
        serverName="box"
        running={true}
        busy={true}
        onSync={() => undefined}
      />
    );
    const main = mount.container.querySelector<HTMLButtonElement>(
      '.jp-ComputeServers-syncButton'
    )!;
    expect(main.disabled).toBe(true);
    expect(main.title).toBe('A sync of box is under way');
  });
});

describe('ServerSync', () => {
  const mount = mountReactPerTest();

  it('shows a running sync: progress, bar, and Cancel', () => {
    const cancelled: number[] = [];
    const run = makeRun({
      id: 4,
      state: 'running',
      finished: null,
      summary: null,
      progress: {
        phase: 'transferring',
        files_total: 4,
        files_done: 1,
        bytes_total: 2048,
        bytes_done: 1024,
        rate: 512,
        eta_seconds: 2,
        elapsed: 2
      }
    });
    mount.render(
      <ServerSync
        serverName="box"
        entry={entryOf([run])}
        onCancel={r => cancelled.push(r.id)}
      />
    );
    const view = mount.container.querySelector('.jp-ComputeServers-sync')!;
    expect(view.getAttribute('data-state')).toBe('running');
    expect(
      view.querySelector('.jp-ComputeServers-syncHeadline')!.textContent
    ).toContain('Syncing…');
    expect(
      view.querySelector('.jp-ComputeServers-syncProgressText')!.textContent
    ).toBe('1 of 4 files · 1 KB of 2 KB · 512 B/s · 2 s left');
    expect(
      (view.querySelector('progress') as HTMLProgressElement).value
    ).toBeCloseTo(0.5);
    act(() =>
      view
        .querySelector<HTMLButtonElement>('.jp-ComputeServers-syncCancel')!
        .click()
    );
    expect(cancelled).toEqual([4]);
  });

  it('lists conflicts with links to both files, errors with what to do, and skips', () => {
    const opened: string[] = [];
    const summary: ISyncSummary = {
      ...EMPTY_SUMMARY,
      sent: { files: 2, bytes: 10 },
      received: { files: 1, bytes: 3 },
      conflicts: [
        {
          path: 'sub/x.py',
          conflict_path: 'sub/x (conflict box 2030-01-01 120000).py',
          resolved: true
        },
        { path: 'y.txt', conflict_path: null, resolved: false }
      ],
      errors: [{ path: 'locked.txt', message: 'Permission denied' }],
      skipped: [
        {
          path: 'big.bin',
          side: 'local',
          reason: 'larger than the size limit (1.0 MB)'
        }
      ]
    };
    mount.render(
      <ServerSync
        serverName="box"
        entry={entryOf([makeRun({ summary })])}
        onOpenFile={p => opened.push(p)}
      />
    );
    const view = mount.container.querySelector('.jp-ComputeServers-sync')!;
    expect(
      view.querySelector('.jp-ComputeServers-syncSummary')!.textContent
    ).toBe(
      '2 sent · 1 received · 0 deleted · 2 conflicts · 1 skipped · 1 error'
    );
    const links = Array.from(
      view.querySelectorAll<HTMLAnchorElement>('.jp-ComputeServers-syncOpen')
    );
    expect(links.map(a => a.dataset.path)).toEqual([
      'sub/x.py',
      'sub/x (conflict box 2030-01-01 120000).py',
      'y.txt'
    ]);
    for (const link of links.slice(0, 2)) {
      act(() => link.click());
    }
    expect(opened).toEqual([
      'sub/x.py',
      'sub/x (conflict box 2030-01-01 120000).py'
    ]);
    expect(
      view.querySelector(
        '.jp-ComputeServers-syncConflict[data-resolved="false"]'
      )!.textContent
    ).toContain('sync both ways to keep both versions');
    const errors = view.querySelector('.jp-ComputeServers-syncErrors')!;
    expect(errors.getAttribute('role')).toBe('alert');
    expect(errors.textContent).toContain('locked.txt: Permission denied');
    expect(errors.textContent).toContain('then sync again');
    expect(
      view.querySelector('.jp-ComputeServers-syncSkipped')!.textContent
    ).toContain(
      'big.bin (in the Jupyter root): larger than the size limit (1.0 MB)'
    );
  });

  it('says why a sync failed and what to do; a cancel what it kept', () => {
    mount.render(
      <ServerSync
        serverName="box"
        entry={entryOf([
          makeRun({
            state: 'failed',
            error: 'The server is unreachable.',
            summary: null
          })
        ])}
      />
    );
    const error = mount.container.querySelector(
      '.jp-ComputeServers-syncError'
    )!;
    expect(error.getAttribute('role')).toBe('alert');
    expect(error.textContent).toContain('The server is unreachable.');
    expect(error.textContent).toContain('then sync again');

    mount.render(
      <ServerSync
        serverName="box"
        entry={entryOf([makeRun({ state: 'cancelled', error: 'cancelled' })])}
      />
    );
    expect(
      mount.container.querySelector('.jp-ComputeServers-syncError')!.textContent
    ).toBe(
      'What was copied before the cancel stays synced; sync again to finish.'
    );
  });

  it('shows nothing before a first sync, and a refusal to start', () => {
    mount.render(<ServerSync serverName="box" entry={entryOf([])} />);
    expect(mount.container.innerHTML).toBe('');
    mount.render(
      <ServerSync
        serverName="box"
        entry={entryOf([])}
        actionError="box is off; start it first."
      />
    );
    expect(mount.container.querySelector('[role="alert"]')!.textContent).toBe(
      'box is off; start it first.'
    );
  });
});

describe('sync settings', () => {
  it('sends only what changed, numbers as numbers, blank lines dropped', () => {
    const values = syncFormValues(DEFAULT_SYNC_SETTINGS);
    expect(values).toEqual({
      excludes: '',
      server_only: '',
      max_file_size_mb: '1024',
      auto_sync: false,
      auto_sync_minutes: '15',
      before_kernel: true
    });
    expect(buildSyncUpdate(values, DEFAULT_SYNC_SETTINGS)).toEqual({});
    expect(parseLines('*.csv\r\n\n  \ndata/raw/\n')).toEqual([
      '*.csv',
      'data/raw/'
    ]);
    expect(
      buildSyncUpdate(
        {
          ...values,
          excludes: '*.csv\n\n!keep.csv',
          max_file_size_mb: '',
          auto_sync: true,
          auto_sync_minutes: '5',
          before_kernel: false
        },
        DEFAULT_SYNC_SETTINGS
      )
    ).toEqual({
      excludes: ['*.csv', '!keep.csv'],
      max_file_size_mb: null,
      auto_sync_minutes: 5,
      before_kernel: false
    });
    // What is not a number goes as typed, for the server to say why.
    expect(
      buildSyncUpdate(
        { ...values, max_file_size_mb: 'lots' },
        DEFAULT_SYNC_SETTINGS
      )
    ).toEqual({ max_file_size_mb: 'lots' });
  });

  it('names the input a refusal is about', () => {
    expect(syncErrorKeyFor('sync.excludes[3]')).toBe('excludes');
    expect(syncErrorKeyFor('sync.max_file_size_mb')).toBe('max_file_size_mb');
    expect(syncErrorKeyFor('sync')).toBe('general');
    expect(syncErrorKeyFor(null)).toBe('general');
  });
});

describe('sync against a real server', () => {
  // jsdom's WebSocket sends the test page's origin, which Jupyter checks like a browser's.
  const api = new JupyterServer({ allowOrigin: 'http://localhost' });
  let servers: ServersModel;
  let model: SyncModel;
  let events: EventManager;
  let service: ServerEvents;
  let heard: Event.Emission[];
  let live: SyncLiveUpdates | null = null;
  let serverId: number;
  renderOutsideAct();

  beforeAll(async () => {
    await api.start();
    events = new EventManager({ serverSettings: api.settings });
    service = new ServerEvents(events);
    await until(() => (events as any)._socket?.readyState === 1, 20000);
    serverId = (await api.create('box', 'running')).id;
  }, 90000);

  afterAll(async () => {
    service.dispose();
    events.dispose();
    await api.stop();
  }, 90000);

  beforeEach(async () => {
    api.requests = [];
    heard = [];
    events.stream.connect(record);
    servers = new ServersModel(api.settings);
    await servers.refresh();
    model = new SyncModel(api.settings);
    api.requests = [];
  });

  afterEach(() => {
    events.stream.disconnect(record);
    live?.dispose();
    live = null;
    model.dispose();
    servers.dispose();
  });

  function record(_: unknown, event: Event.Emission): void {
    if (event.kind === 'sync') {
      heard.push(event);
    }
  }

  function follow(
    options: { events?: boolean; runningInterval?: number } = {}
  ) {
    live = new SyncLiveUpdates({
      model,
      servers,
      events: options.events === false ? null : service,
      interval: 600000,
      runningInterval: options.runningInterval ?? 600000
    });
  }

  function write(
    relative: string,
    text: string,
    side: 'root' | 'server' = 'root'
  ) {
    const base = side === 'root' ? api.rootDir : api.workspace(serverId);
    const file = path.join(base, relative);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  }

  async function finished(): Promise<ISyncRun> {
    await until(() => {
      const run = model.latest(serverId);
      return !!run && run.state !== 'running' && !run.heard;
    }, 20000);
    return model.latest(serverId)!;
  }

  it('a sync shows as running at once, then its summary, from the events alone', async () => {
    follow();
    write('hello.txt', 'hello');
    const ended: ISyncRun[] = [];
    model.ended.connect((_, run) => ended.push(run));

    const run = await model.start(serverId, { direction: 'both' });
    expect(run.state).toBe('running');
    expect(model.latest(serverId)?.id).toBe(run.id);
    expect(model.entry(serverId).value.running).toBe(run.id);

    const done = await finished();
    expect(done.state).toBe('completed');
    expect(done.summary?.sent).toEqual({ files: 1, bytes: 5 });
    expect(summaryCounts(done.summary!)[0]).toBe('1 sent');
    expect(model.entry(serverId).value.running).toBeNull();
    expect(
      fs.readFileSync(path.join(api.workspace(serverId), 'hello.txt'), 'utf8')
    ).toBe('hello');
    // The sync events said so: its start and its end; the end was read for the summary.
    expect(heard.map(e => (e.sync as any).id)).toContain(run.id);
    expect((heard[heard.length - 1].sync as any).state).toBe('completed');
    expect(api.requests.map(r => `${r.method} ${r.path}`)).toEqual([
      `POST /compute-servers/api/servers/${serverId}/sync`,
      `GET /compute-servers/api/servers/${serverId}/syncs/${run.id}`
    ]);
    expect(ended.map(r => r.id)).toEqual([run.id]);
  });

  it('a conflict keeps both versions, both of which the summary links to', async () => {
    follow();
    write('notes.md', 'base');
    await model.start(serverId);
    await finished();
    write('notes.md', 'mine');
    write('notes.md', 'theirs', 'server');
    await model.start(serverId);
    const done = await finished();
    expect(done.summary?.conflicts).toHaveLength(1);
    const conflict = done.summary!.conflicts[0];
    expect(conflict.path).toBe('notes.md');
    expect(conflict.resolved).toBe(true);
    expect(conflict.conflict_path).toMatch(/^notes \(conflict box .*\)\.md$/);
    // Both paths are the Jupyter root's files.
    expect(fs.readFileSync(path.join(api.rootDir, conflict.path), 'utf8')).toBe(
      'mine'
    );
    expect(
      fs.readFileSync(path.join(api.rootDir, conflict.conflict_path!), 'utf8')
    ).toBe('theirs');
  });

  it('follows a running sync by reading it while its events do not come', async () => {
    follow({ events: false, runningInterval: 100 });
    write('quiet.txt', 'quiet');
    const run = await model.start(serverId, { direction: 'push' });
    const done = await finished();
    expect(done.id).toBe(run.id);
    expect(done.summary?.sent.files).toBe(1);
    expect(
      api.requests.some(
        r =>
          r.path === `/compute-servers/api/servers/${serverId}/syncs/${run.id}`
      )
    ).toBe(true);
  });

  it('reads the latest syncs of a running server when shown, and forgets it when it stops', async () => {
    follow();
    write('seen.txt', 'seen');
    await api.call(
      'POST',
      `servers/${serverId}/sync`,
      { direction: 'push' },
      202
    );
    await sleep(50);
    model.watched = true;
    await until(() => model.entry(serverId).loaded);
    expect(model.entry(serverId).value.defaultExcludes).toContain('.git/');
    await finished();
    // No ended signal for what was only read, not seen running here: nothing to announce.
  });

  it('a refusal is kept for the server and shown: a second sync while one runs', async () => {
    follow();
    // Enough data that the first sync is still running when the second is asked for.
    const big = Buffer.alloc(64 * 2 ** 20, 7);
    fs.writeFileSync(path.join(api.rootDir, 'big.bin'), big);
    const first = await model.start(serverId, { direction: 'push' });
    await expect(
      model.start(serverId, { direction: 'push' })
    ).rejects.toThrow();
    expect(model.actionError(serverId)).toMatch(/already/i);
    await finished();
    expect(model.latest(serverId)?.id).toBe(first.id);
    // The next start clears it.
    write('small.txt', 'x');
    await model.start(serverId);
    expect(model.actionError(serverId)).toBeNull();
    await finished();
    fs.rmSync(path.join(api.rootDir, 'big.bin'));
    fs.rmSync(path.join(api.workspace(serverId), 'big.bin'));
  });

  it('cancel stops a running sync', async () => {
    follow();
    for (let i = 0; i < 8; i++) {
      fs.writeFileSync(
        path.join(api.rootDir, `chunk-${i}.bin`),
        Buffer.alloc(32 * 2 ** 20, i)
      );
    }
    const run = await model.start(serverId, { direction: 'push' });
    await model.cancel(serverId, run.id);
    const done = await finished();
    // It may have finished before the cancel reached it on a fast machine.
    expect(['cancelled', 'completed']).toContain(done.state);
    if (done.state === 'cancelled') {
      expect(done.summary?.sent.files ?? 0).toBeLessThan(8);
    }
    for (let i = 0; i < 8; i++) {
      fs.rmSync(path.join(api.rootDir, `chunk-${i}.bin`));
    }
  }, 30000);

  it('saves the sync settings through the dialog, and shows a refusal by its field', async () => {
    const server = servers.server(serverId)!;
    expect(server.sync).toEqual(DEFAULT_SYNC_SETTINGS);
    const body = new SyncSettingsBody(servers, server, async () => ['.git/']);
    await until(() => body.defaultExcludes !== null);
    body.values = {
      ...body.values,
      server_only: 'scratch\n../outside',
      auto_sync: true,
      auto_sync_minutes: '10'
    };
    expect(await body.submit()).toBe(false);
    expect(body.errors.server_only).toMatch(/^Line 2: sync\.server_only\[1\]/);
    expect(servers.server(serverId)?.sync?.server_only).toEqual([]);

    body.values = { ...body.values, server_only: 'scratch' };
    api.requests = [];
    expect(await body.submit()).toBe(true);
    expect(api.requests.map(r => [r.method, r.body])).toEqual([
      ['PATCH', { sync: { server_only: ['scratch'], auto_sync_minutes: 10 } }]
    ]);
    expect(body.saved?.sync).toEqual({
      ...DEFAULT_SYNC_SETTINGS,
      server_only: ['scratch'],
      auto_sync_minutes: 10
    });
    body.dispose();

    // Back as they were, for the other tests.
    await api.call(
      'PATCH',
      `servers/${serverId}`,
      { sync: { server_only: [], auto_sync_minutes: null } },
      200
    );
  });

  it('in the sidebar: press Sync, see it run, then "1 sent"; a conflict opens both files', async () => {
    follow();
    write('from-lab.txt', 'lab');
    const opened: string[] = [];
    const sidebar = new ComputeServersSidebar({
      status: new StatusModel(api.settings),
      model: servers
    });
    sidebar.addSection(
      new SyncSection({
        sync: model,
        onSync: (server, direction) =>
          void model.start(server.id, { direction }).catch(() => undefined),
        onOpenFile: p => opened.push(p)
      })
    );
    Widget.attach(sidebar, document.body);
    expect(model.watched).toBe(true);
    const row = () =>
      sidebar.node.querySelector<HTMLElement>(
        `.jp-ComputeServers-server[data-server-id="${serverId}"]`
      )!;
    await until(() => !!row()?.querySelector('.jp-ComputeServers-syncButton'));
    row()
      .querySelector<HTMLButtonElement>('.jp-ComputeServers-syncButton')!
      .click();
    const summary = () =>
      row().querySelector('.jp-ComputeServers-syncSummary')?.textContent ?? '';
    await until(() => summary().startsWith('1 sent'), 10000);
    expect(summary()).toBe(
      '1 sent · 0 received · 0 deleted · 0 conflicts · 0 skipped'
    );
    expect(
      row().querySelector('.jp-ComputeServers-syncHeadline')!.textContent
    ).toMatch(/^Synced at \d\d:\d\d$/);

    // Changed on both sides: both versions kept, each a link.
    write('from-lab.txt', 'lab 2');
    write('from-lab.txt', 'server 2', 'server');
    row()
      .querySelector<HTMLButtonElement>('.jp-ComputeServers-syncButton')!
      .click();
    await until(() => summary().includes('1 conflict'), 10000);
    const links = Array.from(
      row().querySelectorAll<HTMLAnchorElement>('.jp-ComputeServers-syncOpen')
    );
    expect(links.map(a => a.dataset.path)).toEqual([
      'from-lab.txt',
      expect.stringMatching(/^from-lab \(conflict box .*\)\.txt$/)
    ]);
    links[1].click();
    expect(opened).toEqual([links[1].dataset.path]);
    sidebar.dispose();
    expect(model.watched).toBe(false);
  });

  it('a server that is not running cannot sync: the model keeps why', async () => {
    const other = await api.create('idle');
    await expect(model.start(other.id)).rejects.toThrow();
    expect(model.actionError(other.id)).toMatch(/not running|deprovisioned/i);
    await api.call('DELETE', `servers/${other.id}`, undefined, 204);
  });
});

describe('sync live updates with fake events', () => {
  it('takes in progress without a request, and reads an end once', async () => {
    const requests: string[] = [];
    const model = new SyncModel();
    (model as any).refreshRun = async (serverId: number, syncId: number) => {
      requests.push(`${serverId}/${syncId}`);
    };
    const servers = {
      servers: [] as { id: number }[],
      changed: { connect: () => true, disconnect: () => true }
    };
    const events = new FakeEvents();
    const live = new SyncLiveUpdates({
      model,
      servers: servers as any,
      events: events.service,
      interval: 600000,
      auto: false
    });
    const emit = (sync: Record<string, unknown>) =>
      events.server('sync', 5, { sync });
    emit({
      id: 9,
      state: 'running',
      phase: 'transferring',
      files_total: 2,
      files_done: 1,
      bytes_total: 4,
      bytes_done: 2,
      rate: 2,
      eta_seconds: 1,
      elapsed: 1
    });
    expect(model.latest(5)?.progress?.files_done).toBe(1);
    expect(model.entry(5).value.running).toBe(9);
    expect(requests).toEqual([]);
    emit({ id: 9, state: 'completed', phase: 'done', elapsed: 2 });
    expect(model.latest(5)?.state).toBe('completed');
    expect(model.entry(5).value.running).toBeNull();
    expect(requests).toEqual(['5/9']);
    live.dispose();
    model.dispose();
  });
});
