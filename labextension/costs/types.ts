/**
 * The shapes of what the server extension says about costs: a server's `cost` and
 * `auto_stop` (in `GET servers` and `GET servers/{id}`) and `GET compute-servers/api/costs`
 * (see `ServerCost`, `AutoStop` and `Costs` in openapi.json).
 */
import { IRate, IStateRates } from '../create/types';

/** Dollars spent; `unknown` names parts whose price was unknown for a while (lower bounds). */
export interface ISpent {
  today: number;
  month: number;
  total: number;
  unknown: string[];
}

/** ok; warning from the warning fraction (80%); reached: stopped, and it cannot start. */
export type LimitStatus = 'ok' | 'warning' | 'reached';

/** A server's spend limit and how far it is. */
export interface ISpendLimitStatus {
  amount: number;
  period_days: number;
  /** Dollars in the last `period_days` days. */
  spent: number;
  fraction: number;
  status: LimitStatus;
  /** When it is reached at the current rate (null: never at this rate). */
  reached_at?: number | null;
}

/** A server's `cost` (null only if it could not be worked out). */
export interface IServerCost {
  currency: string;
  /** Per hour in each state: "$0.38/h running · $0.01/h off". */
  rates: IStateRates;
  /** Per hour in its current state. */
  hourly: IRate;
  /** Today and this month are in the costs time zone. */
  spent: ISpent;
  spend_limit: ISpendLimitStatus | null;
}

/** When a running server will stop by itself. */
export interface IAutoStop {
  /** Whether this Jupyter server watches limits and idleness. */
  watching: boolean;
  idle: {
    timeout_minutes: number;
    /** Unix time of the last sign of use (or of the start). */
    idle_since: number;
    /** Unix time it stops unless used before. */
    stops_at: number;
    last_activity?: { at: number; what: string } | null;
  } | null;
  /** Unix time of the next daily stop. */
  daily_stop_at: number | null;
}

/** The monthly budget across all servers. */
export interface IBudget {
  monthly: number;
  spent: number;
  fraction: number;
  status: LimitStatus;
  warning_fraction: number;
}

/** What `GET compute-servers/api/costs` answers. */
export interface ICosts {
  currency: string;
  /** Unix time of these figures. */
  at: number;
  /** Of today and this month. */
  timezone: string;
  /** YYYY-MM. */
  month: string;
  /** All servers, deleted ones included. */
  spent: ISpent;
  /** What all servers cost per hour now. */
  hourly: IRate;
  budget: IBudget | null;
  servers: {
    id: number;
    name: string;
    cloud: string;
    state: string;
    cost: IServerCost | null;
  }[];
  deleted_servers: { spent: ISpent };
}
