/**
 * The live cost estimate of the create and edit dialogs: `POST estimate` for the options as
 * they are, asked again (debounced) as they change, answers to older requests dropped; and how
 * it reads ("$0.38/h running · $0.01/h off · ~$274 for 30 days"), saying "price unknown"
 * wherever a price is not known, never a guess.
 */
import { ApiError } from '../request';
import { ICostPart, IEstimate, IEstimateRequest, IRate } from './types';

/** What the dialog shows: the last estimate, and whether a newer one is on its way. */
export interface IEstimateState {
  /** The estimate for the last options the server could price (null before the first). */
  estimate: IEstimate | null;
  /** Why the current options could not be priced (the server's words), or null. */
  error: string | null;
  /** The input at fault (`config.cpu`...), when the server named it. */
  field: string | null;
  /** A request is waiting or in flight: the estimate shown may be for older options. */
  pending: boolean;
}

export const EMPTY_ESTIMATE: IEstimateState = {
  estimate: null,
  error: null,
  field: null,
  pending: false
};

/**
 * Asks for estimates as the options change: `request(body)` after every change; only the last
 * body of a burst is sent (after `delay` ms), an identical body is not sent again, and an
 * answer to an older request is dropped. `changed` is called whenever `state` changes.
 */
export class EstimateTracker {
  constructor(options: EstimateTracker.IOptions) {
    this._fetch = options.fetch;
    this._delay = options.delay ?? 300;
    this._changed = options.changed;
  }

  get state(): IEstimateState {
    return this._state;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Estimate `body` soon (null: nothing to estimate; the last estimate stays shown). */
  request(body: IEstimateRequest | null): void {
    if (this._disposed) {
      return;
    }
    const key = body === null ? null : JSON.stringify(body);
    if (key === this._wanted) {
      return;
    }
    this._wanted = key;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    if (body === null) {
      ++this._ticket;
      this._set({ ...this._state, pending: false });
      return;
    }
    this._set({ ...this._state, pending: true });
    this._timer = setTimeout(() => {
      this._timer = null;
      void this._send(body);
    }, this._delay);
  }

  dispose(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    this._disposed = true;
  }

  private async _send(body: IEstimateRequest): Promise<void> {
    const ticket = ++this._ticket;
    try {
      const estimate = await this._fetch(body);
      if (ticket === this._ticket && !this._disposed) {
        this._set({ estimate, error: null, field: null, pending: false });
      }
    } catch (error) {
      if (ticket === this._ticket && !this._disposed) {
        this._set({
          ...this._state,
          error: error instanceof Error ? error.message : String(error),
          field: error instanceof ApiError ? error.field : null,
          pending: false
        });
      }
    }
  }

  private _set(state: IEstimateState): void {
    this._state = state;
    this._changed?.();
  }

  private _fetch: (body: IEstimateRequest) => Promise<IEstimate>;
  private _delay: number;
  private _changed?: () => void;
  private _state: IEstimateState = EMPTY_ESTIMATE;
  private _wanted: string | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _ticket = 0;
  private _disposed = false;
}

export namespace EstimateTracker {
  export interface IOptions {
    /** Ask the server (`POST estimate`). */
    fetch: (body: IEstimateRequest) => Promise<IEstimate>;
    /** How long options must stay unchanged before they are sent, in ms (default 300). */
    delay?: number;
    /** Called whenever the state changes. */
    changed?: () => void;
  }
}

/**
 * Dollars as the estimate says them: cents, and more digits below a cent so that a small
 * rate does not read as free ($0.0068); exactly 0 as "$0".
 */
export function formatUsd(amount: number): string {
  if (amount === 0) {
    return '$0';
  }
  const sign = amount < 0 ? '-' : '';
  const value = Math.abs(amount);
  if (value >= 100) {
    return `${sign}$${Math.round(value).toLocaleString('en-US')}`;
  }
  if (value >= 0.01) {
    return `${sign}$${value.toFixed(2)}`;
  }
  return `${sign}$${Number(value.toPrecision(2))}`;
}

/**
 * A price shipped with its date that may no longer be the price (the spot prices of the gcp
 * table: Google changes them up to once every 30 days): its note says "...; may have changed".
 */
export function isDatedPrice(part: ICostPart): boolean {
  return part.hourly !== null && /may have changed/.test(part.note ?? '');
}

/** One part's price: "$0.35/h", or "about $0.40/h (spot price of <date>; may have changed)". */
export function formatPartPrice(part: ICostPart): string {
  if (part.hourly === null) {
    return `price unknown${part.note ? `: ${part.note}` : ''}`;
  }
  const price = `${formatUsd(part.hourly)}/h`;
  return isDatedPrice(part) ? `about ${price} (${part.note})` : price;
}

/**
 * A rate per hour: "$0.38/h", "about $0.38/h" when a part's price may have changed since its
 * date, or "price unknown" when any part's price is unknown.
 */
export function formatRate(rate: IRate): string {
  if (rate.unknown.length > 0) {
    return 'price unknown';
  }
  const about = (rate.parts ?? []).some(isDatedPrice) ? 'about ' : '';
  return `${about}${formatUsd(rate.hourly)}/h`;
}

/**
 * Where spend limits and the budget count more than the rate shown (a spot price shipped with
 * its date counts at the on-demand price, as it may have risen up to it), the server's words
 * as a sentence: "Spend limits and the budget count $0.19/h, the on-demand price, ..."; null
 * where they count what is shown.
 */
export function limitCountNote(rate: IRate): string | null {
  const note = rate.limit_note;
  if (rate.limit_hourly === undefined || !note) {
    return null;
  }
  return `${note.charAt(0).toUpperCase()}${note.slice(1)}.`;
}

/** The parts whose price is not known, anywhere in the estimate, each named once. */
export function unknownParts(estimate: IEstimate): string[] {
  const { running, off, suspended } = estimate.rates;
  const names = [
    ...running.unknown,
    ...off.unknown,
    ...(suspended?.unknown ?? []),
    ...estimate.projection.unknown
  ];
  return Array.from(new Set(names));
}

/** The estimate in one line: "$0.38/h running · $0.01/h off · ~$274 for 30 days". */
export function estimateSummary(estimate: IEstimate): string {
  const { rates, projection } = estimate;
  const parts = [
    `${formatRate(rates.running)} running`,
    `${formatRate(rates.off)} off`
  ];
  if (rates.suspended) {
    parts.push(`${formatRate(rates.suspended)} suspended`);
  }
  const days = `${projection.days} days`;
  const hours =
    projection.hours_per_day < 24
      ? ` at ${Number(projection.hours_per_day.toFixed(2))} h/day`
      : '';
  parts.push(
    projection.unknown.length > 0
      ? `price unknown for ${days}${hours}`
      : `~${formatUsd(projection.amount)} for ${days}${hours}`
  );
  return parts.join(' · ');
}

/** Hours per day as typed, as the estimate takes it (0-24), or null when it is not that. */
export function parseHoursPerDay(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === '') {
    return null;
  }
  const hours = Number(trimmed);
  return Number.isFinite(hours) && hours >= 0 && hours <= 24 ? hours : null;
}
