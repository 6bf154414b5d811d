/** Helpers shared by the jest tests (not a test file: jest only runs `*.spec.ts[x]`). */
import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';

import { sleep } from './jupyterServer';

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
