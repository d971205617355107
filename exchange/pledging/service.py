"""What exchange.courts used of the former pledging service, under its old names, until it imports the
modules that hold them (issue #15, step 2). Nothing in pledging imports this module; new code imports
the modules themselves."""

from exchange.pledging.frozen_lots import frozen_pledge_units, note_freeze
from exchange.pledging.recording import kick
from exchange.pledging.refusals import translate_refusals
from exchange.pledging.values import micros, now, present, today

__all__ = ["frozen_pledge_units", "kick", "micros", "note_freeze", "now", "present", "today", "translate_refusals"]
