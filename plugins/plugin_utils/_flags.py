# -*- coding: utf-8 -*-
# Copyright: contributors to vfio.passthrough
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rule for a yes/no a filter is handed: the regeneration filters (and any other) read it here."""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean


def flag(value, name):
    """``value`` as a bool by Ansible's strict rule; '' and None are False. ValueError naming ``name`` otherwise.

    Strict: a set_fact may hand over 'False' or 'no' as a string, which bool() would call true,
    and a list or a number like 2 is no answer at all.
    """
    if value is None or value == '':
        return False
    try:
        return boolean(value, strict=True)
    except TypeError as exc:
        raise ValueError('%s: %s' % (name, exc))
