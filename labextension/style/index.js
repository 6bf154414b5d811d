import './base.css';
import './create.css';
import './sync.css';
import './costs.css';
import './team.css';
