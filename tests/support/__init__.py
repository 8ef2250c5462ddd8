"""Helpers shared by the test suites; fixtures stay in the conftest.py files and call these.

Test modules import helpers from here (never from a conftest.py or another test module):

* ``paths``: where things are (REPO, DATA, the CRDs, the chart, hack/testenv).
* ``env``: ``in_ci()`` and ``unavailable()`` (a skip, or a failure under CI).
* ``waits``: ``wait_for()`` (poll until truthy), ``wait_fast()``.
* ``ports``: ``free_port()``, ``taken_port()``.
* ``processes``: the session marker, the leak check, ``alive()``, ``stop_process()``.
* ``kubectl``: kubectl/helm runners, ``install_crds()``, the ManagedService verbs.
* ``namespaces``: namespaces created for a test, emptied and finalized afterwards.
* ``operator``: ``Operator`` (a ``steward run`` process), ``start_steward()``.
* ``manifests``: ``msvc()``/``manifest()``, ``policy()``, ``http_daemon_spec()``.
* ``hosts``: what the multi-host suites read (conditions, StewardNodes, Leases) and
  ``serving_hosts()``: a `steward controller` and two serving agents on this host.
* ``copies``: samplers counting a service's copies (``Copies``, machine-wide).
* ``multihost``: ``MultiHost``, what the network-namespace lab's fixture yields.
* ``placement``: the StewardNodes and the clock of the placement and binding tables.
* ``chart``, ``containers``, ``terraform``, ``sandbox``, ``gitops``, ``schemas``,
  ``policy_cases``, ``tenants``, ``helm_node``: what one area's suites share.
* ``apps``: the apps python-mode services run (daemons import them, containers mount them).
* ``data``: files under tests/data (Terraform modules; gitops/health-cases.yaml is read by
  ``gitops.health_cases()``).

The control plane harness is ``hack.testenv.controlplane`` (hack/ is a package).
"""
