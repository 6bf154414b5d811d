/** Helpers shared by the jest tests (not a test file: jest only runs `*.spec.ts[x]`). */
import { Event } from '@jupyterlab/services';
import { Signal } from '@lumino/signaling';
import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';

import { sleep } from './jupyterServer';
import { SERVER_EVENT_SCHEMA } from '../servers/types';

/** Jupyter Server's event stream, as the tests drive it (the real one needs a websocket). */
export class FakeEvents {
  stream = new Signal<FakeEvents, Event.Emission>(this);
  isDisposed = false;
  async emit(): Promise<void> {
    // Not used: the server's events are emitted through `stream`.
  }
  dispose(): void {
    this.isDisposed = true;
  }
  /** Emit a compute server event of `kind` for a server. */
  server(kind: string, serverId: number): void {
    this.stream.emit({
      schema_id: SERVER_EVENT_SCHEMA,
      kind,
      server_id: serverId
    });
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
