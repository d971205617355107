"""Trading calendars: which days each market trades (exchange.core.calendar.TradingCalendar is the rule).

- models.py: calendars, days, assignments, changes as rows; repository.py: their only SQL;
- editing.py: reads (public), and the changes an operator proposes and a second approves
  (exchange/security/operator_actions.py `changeCalendar`, `assignMarketCalendar`); an approved change
  reaches the running markets at once;
- cn.py: China's calendar as the State Council publishes it (2026; 2027 not yet published).
"""
