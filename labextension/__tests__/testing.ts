/** Helpers shared by the jest tests (not a test file: jest only runs `*.spec.ts[x]`). */
import { Event } from '@jupyterlab/services';
import Ajv from 'ajv';
import * as fs from 'fs';
import * as path from 'path';
import { Signal } from '@lumino/signaling';
import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';

import { sleep } from './jupyterServer';
import { SERVER_EVENT_SCHEMA, ServerEvents } from '../events/service';
import { IServer } from '../servers/types';

/** The server extension's event schema (what `jupyter_events` validates each event against). */
const EVENT_SCHEMA = JSON.parse(
  fs.readFileSync(
    path.join(
      __dirname,
      '..',
      '..',
      'jupyter_compute_servers',
      'event_schemas',
      'server-v1.json'
    ),
    'utf8'
  )
);
// The schema's own keywords (`version`, `personal-data`) are jupyter_events', not JSON Schema's.
const validateEvent = new Ajv({ strict: false }).compile(EVENT_SCHEMA);

/**
 * The payload the server extension sends for an event of `kind` about a server, as the
 * manager builds it (`kind`, `server_id`, `state`, `state_reason`, `progress`, then the event's
 * own fields), checked against the event schema: a test cannot send what the backend would
 * refuse to emit.
 */
export function serverEventPayload(
  kind: string,
  serverId: number | null,
  extra: Record<string, unknown> = {}
): Record<string, unknown> {
  const payload = {
    kind,
    server_id: serverId,
    state: null,
    state_reason: '',
    progress: '',
    ...extra
  };
  if (!validateEvent(payload)) {
    throw new Error(
      `Not an event the server extension sends: ${JSON.stringify(payload)}: ` +
        new Ajv({ strict: false }).errorsText(validateEvent.errors)
    );
  }
  return payload;
}

/**
 * Jupyter Server's event stream, as the tests drive it (the real one needs a websocket): what
 * comes through it is what Jupyter Server writes to the event websocket, `{schema_id,
 * ...payload}`. `service` is the extension's real events service listening to it.
 */
export class FakeEvents {
  constructor() {
    this.service = new ServerEvents(this.manager);
  }

  readonly stream = new Signal<FakeEvents, Event.Emission>(this);
  /** The events service the models listen to, parsing what comes through `stream`. */
  readonly service: ServerEvents;
  isDisposed = false;

  async emit(): Promise<void> {
    // Not used: the server's events are emitted through `stream`.
  }

  dispose(): void {
    this.isDisposed = true;
    this.service.dispose();
  }

  /** Send the server extension's event of `kind` about a server (see `serverEventPayload`). */
  server(
    kind: string,
    serverId: number | null,
    extra: Record<string, unknown> = {}
  ): void {
    this.stream.emit({
      schema_id: SERVER_EVENT_SCHEMA,
      ...serverEventPayload(kind, serverId, extra)
    });
  }

  /** Send an event of another schema (Jupyter Server's own, another extension's). */
  other(schemaId: string, payload: Record<string, unknown> = {}): void {
    this.stream.emit({ schema_id: schemaId, ...payload });
  }

  get manager(): Event.IManager {
    return this as unknown as Event.IManager;
  }
}

// Tell React this is a test environment that supports act().
(globalThis as any).IS_REACT_ACT_ENVIRONMENT = true;

/** Wait until `check()` holds, polling every 10 ms; fail after `timeout` ms. */
export async function until(
  check: () => boolean,
  timeout = 3000
): Promise<void> {
  const end = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > end) {
      throw new Error('timed out');
    }
    await sleep(10);
  }
}

/** A React root in a fresh `<div>` for each test of the calling `describe`. */
export interface IReactMount {
  /** The element rendered into (valid inside a test). */
  readonly container: HTMLDivElement;
  /** Render synchronously, inside act(). */
  render(element: React.ReactElement): void;
}

/** Mount a fresh React root before each test and unmount it after, in the calling `describe`. */
export function mountReactPerTest(): IReactMount {
  let container: HTMLDivElement;
  let root: Root;

  beforeEach(() => {
    container = document.createElement('div');
    document.body.appendChild(container);
    root = createRoot(container);
  });

  afterEach(() => {
    act(() => root.unmount());
    container.remove();
  });

  return {
    get container() {
      return container;
    },
    render(element: React.ReactElement) {
      act(() => root.render(element));
    }
  };
}

/**
 * For the tests of the calling `describe` that render Lumino widgets (ReactWidget), which
 * render on their own schedule as in a browser: the tests wait for what they expect (`until`)
 * instead of wrapping renders in act(), so React is told it is not in an act() environment.
 */
export function renderOutsideAct(): void {
  beforeAll(() => {
    (globalThis as any).IS_REACT_ACT_ENVIRONMENT = false;
  });
  afterAll(() => {
    (globalThis as any).IS_REACT_ACT_ENVIRONMENT = true;
  });
}

/** A server as `GET servers/{id}` answers it: deprovisioned on the local cloud, every field
 * set (`overrides` replace them). */
export function makeServer(overrides: Partial<IServer> = {}): IServer {
  return {
    id: 1,
    name: 'box',
    owner: 'me',
    color: '#1f77b4',
    notes: '',
    cloud: 'local',
    state: 'deprovisioned',
    state_reason: '',
    config: {
      image: 'python',
      image_tag: 'system',
      machine_type: null,
      cpu: 2,
      memory_gb: 4,
      gpu: null,
      disk_gb: 10,
      disk_type: null,
      spot: null,
      region: null,
      zone: null,
      extra: {}
    },
    idle_timeout_minutes: null,
    spend_limit: null,
    created: 1700000000,
    updated: 1700000000,
    operation: null,
    progress: null,
    allowed_actions: ['start', 'delete'],
    daily_stop: null,
    cost: null,
    auto_stop: null,
    workspace: {
      mode: 'synced',
      mount: { path: '', read_only: false, mount_point: 'jupyter' }
    },
    mount: null,
    queue: null,
    warm_kernels: null,
    sync: {
      excludes: [],
      server_only: [],
      max_file_size_mb: 1024,
      auto_sync_minutes: null,
      before_kernel: true
    },
    ...overrides
  };
}

/**
 * Type `value` into `input` as a user does. React tracks the value it set itself, so the
 * value goes in through the element's own setter, then an `input` event tells React.
 */
export function typeInto(input: HTMLInputElement, value: string): void {
  Object.getOwnPropertyDescriptor(
    HTMLInputElement.prototype,
    'value'
  )!.set!.call(input, value);
  input.dispatchEvent(new window.Event('input', { bubbles: true }));
}
