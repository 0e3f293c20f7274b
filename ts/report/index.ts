// `stoxnet report`: a sweep's results.jsonl as a CSV table and an HTML page of plots.
export { toCsv } from './csv.js';
export { designGroups, seriesGroups, stats, type Group, type Stats } from './groups.js';
export { escapeHtml, renderReport, type ReportOptions } from './html.js';
export { paretoFront, type TradeOff } from './pareto.js';
