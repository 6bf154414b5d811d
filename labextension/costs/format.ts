/**
 * How the sidebar words costs: a server's rates side by side ("$0.38/h running · $0.01/h
 * off"), what it has cost, its spend limit, when it will stop by itself. A price that is not
 * known reads "price unknown", never a guess.
 */
import { formatUsd, limitCountNote } from '../create/estimate';
import { IRate } from '../create/types';
import { formatClock } from '../sync/format';
import {
  IAutoStop,
  IBudget,
  IServerCost,
  ISpendLimitStatus,
  ISpent
} from './types';

export { formatUsd, limitCountNote };

/** "$0.38/h", or "price unknown" when any part's price is unknown. */
export function rateText(rate: IRate): string {
  return rate.unknown.length > 0
    ? 'price unknown'
    : `${formatUsd(rate.hourly)}/h`;
}

/** The running and off rates side by side: "$0.38/h running · $0.01/h off". */
export function ratesLine(cost: IServerCost): string {
  return `${rateText(cost.rates.running)} running · ${rateText(cost.rates.off)} off`;
}

/** What the rates leave out, for a tooltip: "Price unknown: GPU (nvidia-l4)". */
export function ratesTitle(cost: IServerCost): string {
  const lines = [
    `Running: ${rateText(cost.rates.running)}`,
    `Off (the disk): ${rateText(cost.rates.off)}`
  ];
  if (cost.rates.suspended) {
    lines.push(
      `Suspended (disk and memory): ${rateText(cost.rates.suspended)}`
    );
  }
  lines.push('Deprovisioned: $0');
  const unknown = unknownOf(cost);
  if (unknown.length > 0) {
    lines.push(`Price unknown: ${unknown.join(', ')}`);
  }
  return lines.join('\n');
}

/** The parts whose price is not known in any state, each named once. */
export function unknownOf(cost: IServerCost): string[] {
  const { running, off, suspended } = cost.rates;
  return Array.from(
    new Set([...running.unknown, ...off.unknown, ...(suspended?.unknown ?? [])])
  );
}

/** An amount spent, "at least" when some of the time was priced unknown. */
export function spentText(amount: number, spent: ISpent): string {
  return (spent.unknown.length > 0 ? 'at least ' : '') + formatUsd(amount);
}

/** "spent $0.12 today · $3.40 this month". */
export function spentLine(spent: ISpent): string {
  return `spent ${spentText(spent.today, spent)} today · ${spentText(
    spent.month,
    spent
  )} this month`;
}

/** Today, this month and in total, for a tooltip. */
export function spentTitle(spent: ISpent): string {
  const lines = [
    `Today: ${spentText(spent.today, spent)}`,
    `This month: ${spentText(spent.month, spent)}`,
    `In total: ${spentText(spent.total, spent)}`
  ];
  if (spent.unknown.length > 0) {
    lines.push(
      `Lower bounds: the price of ${spent.unknown.join(', ')} was unknown for a while`
    );
  }
  return lines.join('\n');
}

/** "per day", "per 7 days". */
export function periodText(days: number): string {
  return days === 1 ? 'per day' : `per ${days} days`;
}

/** "$20 of $25 per 7 days (80%)", or saying that it was reached. */
export function limitLine(limit: ISpendLimitStatus): string {
  const percent = Math.floor(limit.fraction * 100);
  const base = `${formatUsd(limit.spent)} of ${formatUsd(limit.amount)} ${periodText(
    limit.period_days
  )}`;
  if (limit.status === 'reached') {
    return `Spend limit reached: ${base}. It cannot start until its spend over the last ${
      limit.period_days === 1 ? 'day' : `${limit.period_days} days`
    } falls below the limit, or the limit is raised.`;
  }
  return `${base} (${percent}%)`;
}

/** "$120 of $500 this month (24%)", or saying that the budget was reached. */
export function budgetLine(budget: IBudget): string {
  const percent = Math.floor(budget.fraction * 100);
  const base = `${formatUsd(budget.spent)} of ${formatUsd(budget.monthly)} this month`;
  if (budget.status === 'reached') {
    return `Monthly budget reached: ${base}. Servers that cost money cannot start until next month, or until the budget is raised.`;
  }
  return `${base} (${percent}%)`;
}

/** The next automatic stop of a running server: when, and why. */
export interface IComingStop {
  at: number;
  kind: 'idle' | 'daily';
  text: string;
}

/**
 * When a running server will stop by itself next: "stops at 14:32 if idle" (its idle
 * timeout), "stops at 19:00 (daily stop)"; the sooner of the two, or null.
 */
export function comingStop(
  autoStop: IAutoStop | null | undefined
): IComingStop | null {
  if (!autoStop) {
    return null;
  }
  const stops: IComingStop[] = [];
  if (autoStop.idle) {
    stops.push({
      at: autoStop.idle.stops_at,
      kind: 'idle',
      text: `stops at ${formatClock(autoStop.idle.stops_at)} if idle`
    });
  }
  if (typeof autoStop.daily_stop_at === 'number') {
    stops.push({
      at: autoStop.daily_stop_at,
      kind: 'daily',
      text: `stops at ${formatClock(autoStop.daily_stop_at)} (daily stop)`
    });
  }
  stops.sort((a, b) => a.at - b.at);
  return stops[0] ?? null;
}

/** The tooltip of the coming stop: both stops, what counts as use, who watches. */
export function comingStopTitle(autoStop: IAutoStop): string {
  const lines: string[] = [];
  if (autoStop.idle) {
    const idle = autoStop.idle;
    lines.push(
      `Idle timeout: ${idle.timeout_minutes} min without kernel activity, terminal input or GPU use; idle since ${formatClock(
        idle.idle_since
      )}, so it stops at ${formatClock(idle.stops_at)} unless used before.`
    );
    if (idle.last_activity) {
      lines.push(
        `Last activity: ${idle.last_activity.what} at ${formatClock(idle.last_activity.at)}.`
      );
    }
  }
  if (typeof autoStop.daily_stop_at === 'number') {
    lines.push(`Daily stop at ${formatClock(autoStop.daily_stop_at)}.`);
  }
  if (!autoStop.watching) {
    lines.push(
      'This Jupyter server does not watch for automatic stops (another one may).'
    );
  }
  return lines.join('\n');
}
